"""How a task reads its training split: the typed config sections of the stream reader and its
augmentation.  Plain dataclasses, no torch: ``launch`` validates a job config with them before
any process starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class AugmentConfig:
    """Training transforms of a task; evaluation always uses resize + centre crop."""

    size: int = 112
    """Output side in pixels."""
    crop: Literal["random", "random_resized", "center"] = "random"
    """random: a size x size window at a random position (FaceNet); random_resized: a random
    area in crop_scale, resampled to size; center: no randomness."""
    crop_scale: tuple[float, float] = (0.85, 1.0)
    hflip: bool = True
    color_jitter: float = 0.0
    """Brightness, contrast and saturation factors drawn from [1 - j, 1 + j]; 0 disables."""
    normalize: Literal["facenet", "imagenet", "none"] = "facenet"


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
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def batch_samples(self) -> int:
        return self.identities_per_batch * self.images_per_identity if self.mode == "pk" else self.batch_size
