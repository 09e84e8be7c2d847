"""How a task reads its training split: the typed config sections of the stream reader and its
augmentation.  Plain dataclasses, no torch: ``launch`` validates a job config with them before
any process starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shards.availability import check_enough_identities, split_availability


@dataclass(frozen=True)
class AugmentConfig:
    """Training transforms of a task.  Evaluation draws nothing: a random window becomes the centre
    window on the training canvas (shards/geometry.py), other crops resize + centre crop."""

    size: int = 112
    """Output side in pixels."""
    crop: Literal["random", "random_resized", "center"] = "random"
    """random: a size x size window at a random position (FaceNet); random_resized: a random
    area in crop_scale, resampled to size; center: no randomness."""
    crop_scale: tuple[float, float] = (0.85, 1.0)
    hflip: bool = True
    vflip: bool = False
    """Also mirror top-bottom with probability 1/2 (histology has no up and down)."""
    rotation: float = 0.0
    """Rotate the output window by an angle drawn from [-rotation, rotation] degrees (corners black)."""
    color_jitter: float = 0.0
    """Brightness, contrast and saturation factors drawn from [1 - j, 1 + j]; 0 disables."""
    normalize: Literal["facenet", "imagenet", "none"] = "facenet"
    intensity: Literal["minmax", "window", "percentile"] = "minmax"
    """How 16-bit images become the uint8 batch (8-bit images are used as they are): minmax
    maps each image's own min..max (the medical default, REFERENCE.md §11.5), window the fixed
    intensity_window, percentile each image's intensity_percentiles; then clipped to 0..255."""
    intensity_window: tuple[float, float] = (0.0, 65535.0)
    """[low, high] raw intensities mapped to 0..255 by the window mapping."""
    intensity_percentiles: tuple[float, float] = (0.5, 99.5)
    """[p_low, p_high] percentiles of each image mapped to 0..255 by the percentile mapping."""

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {self.size}")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"rotation must be in [0, 180] degrees, got {self.rotation}")
        if not 0 <= self.color_jitter < 1:
            raise ValueError(f"color_jitter must be in [0, 1), got {self.color_jitter}")
        low, high = self.intensity_window
        if not 0 <= low < high <= 65535:
            raise ValueError(f"intensity_window must satisfy 0 <= low < high <= 65535, got {self.intensity_window}")
        low, high = self.intensity_percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"intensity_percentiles must satisfy 0 <= low < high <= 100, "
                             f"got {self.intensity_percentiles}")


@dataclass(frozen=True)
class StreamConfig:
    """How a task reads its training split."""

    shards: str
    """Folder with manifest.json (from ``shards build``)."""
    split: str = "train"
    mode: Literal["pk", "shuffle"] = "pk"
    """pk: P identities × K images per batch (triplet mining); shuffle: plain classification."""
    identities_per_batch: int = 16
    """P."""
    images_per_identity: int = 4
    """K."""
    batch_size: int = 64
    """Samples per batch in shuffle mode."""
    small_identities: Literal["replace", "skip"] = "replace"
    """Identities with fewer than K images: drawn with replacement, or skipped."""
    class_balance: Literal["none", "oversample", "undersample"] = "none"
    """Shuffle mode: repeat (or thin) samples so every class is drawn equally often."""
    buffer_samples: int = 2048
    """Bound of the batching buffer, in samples (encoded bytes are held, not pixels)."""
    open_shards: int = 4
    """Shards each reader interleaves."""
    num_workers: int = 2
    steps_per_epoch: int = 0
    """Batches per rank per epoch; 0: split samples // (batch × world size)."""
    seed: int = 0
    max_missing_fraction: float = 0.01
    """Share of the split's samples that may be missing (absent or truncated shards, undecodable
    images) before the run stops with an error naming them; each one is counted in results.json."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        positive = {"identities_per_batch (P)": self.identities_per_batch, "images_per_identity (K)":
                    self.images_per_identity, "batch_size": self.batch_size, "buffer_samples": self.buffer_samples,
                    "open_shards": self.open_shards}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.num_workers < 0 or self.steps_per_epoch < 0:
            raise ValueError(f"num_workers and steps_per_epoch must be >= 0, got {self.num_workers} and "
                             f"{self.steps_per_epoch}")
        if self.buffer_samples < self.batch_samples:
            raise ValueError(f"buffer_samples ({self.buffer_samples}) must hold at least one batch "
                             f"({self.batch_samples} samples)")
        if not 0 <= self.max_missing_fraction <= 1:
            raise ValueError(f"max_missing_fraction must be in [0, 1], got {self.max_missing_fraction}")

    @property
    def batch_samples(self) -> int:
        return self.identities_per_batch * self.images_per_identity if self.mode == "pk" else self.batch_size

    def check_inputs(self) -> None:
        """What the reader would find, checked without reading: the manifest, the split, its shards
        present at their manifest sizes (within max_missing_fraction) and, for P×K batches, P
        identities with K images.  ManifestError, ValueError or MissingData, one line each."""
        availability = split_availability(self.shards, self.split)
        availability.check(self.max_missing_fraction)
        if self.mode == "pk":
            check_enough_identities(availability.manifest["splits"][self.split]["labels"], self.identities_per_batch,
                                    self.images_per_identity, self.small_identities,
                                    f"{self.shards} split {self.split}")
