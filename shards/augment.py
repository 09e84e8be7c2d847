"""Decoding and augmentation of stream samples into uint8 (3, H, W) arrays.

The training default is FaceNet's own augmentation: a random ``size`` x ``size`` window (no
resampling) and a horizontal flip. For JPEG samples that is a fast path: libjpeg-turbo through
torchcodec's ``decode_jpeg`` (torchvision.io's image decoders are deprecated since torchvision
0.29 in its favour) straight to a (3, H, W) array, the window and the flip as a numpy view,
and one copy into the caller's batch buffer. Everything else (PNG, resampling crops, colour
jitter, images smaller than the window, evaluation) goes through PIL and
torchvision.transforms.v2. Measured on the 2-core CPU machine (160x160 JPEG, per image): PIL's
decode, with its Python-level marker parsing and RGBX->RGB repacking, 0.156 ms; decode_jpeg
0.131 ms; float normalisation 0.4 ms, and float batches are 4x the bytes of uint8 through the
workers' shared memory and the host-to-device copy, so workers emit uint8 and
``normalize_batch`` runs on the consumer's device.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torchcodec.decoders import decode_jpeg
from torchvision.transforms.v2 import functional as F

from shards.items import IMAGE_FIELDS

NORMALIZATION = {
    # FaceNet's fixed_image_standardization: (x - 127.5) / 128
    "facenet": ([127.5] * 3, [128.0] * 3),
    "imagenet": ([0.485 * 255, 0.456 * 255, 0.406 * 255], [0.229 * 255, 0.224 * 255, 0.225 * 255]),
}


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


def decode_image(fields: dict, size_hint: int | None = None) -> Image.Image:
    """The RGB image of a sample's jpg or png bytes; ValueError if undecodable.  With a size
    hint, JPEG draft mode decodes at a power-of-two reduction no smaller than the hint."""
    name = next((f for f in IMAGE_FIELDS if f in fields), None)
    if name is None:
        raise ValueError("no jpg or png field")
    try:
        image = Image.open(io.BytesIO(fields[name]))
        if size_hint and image.format == "JPEG":
            image.draft("RGB", (size_hint, size_hint))
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot decode {name}: {exc}") from None


class Augmenter:
    """A sample's image fields -> (3, size, size) uint8 array (possibly a view: copy it into the
    batch), with randomness from the generator it is given."""

    def __init__(self, config: AugmentConfig, train: bool):
        self.config, self.train = config, train
        self.crop = config.crop if train else "center"
        self.fast = self.crop == "random" and not (train and config.color_jitter)

    def __call__(self, fields: dict, rng: np.random.Generator) -> np.ndarray:
        if self.fast and "jpg" in fields:
            pixels = decode_jpeg_array(fields["jpg"])
            if min(pixels.shape[1:]) >= self.config.size:
                return self._window_and_flip(pixels, rng)
        return self._with_pil(decode_image(fields, self.config.size), rng)

    def _window_and_flip(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        size = self.config.size
        top, left = int(rng.integers(pixels.shape[1] - size + 1)), int(rng.integers(pixels.shape[2] - size + 1))
        window = pixels[:, top : top + size, left : left + size]
        return window[:, :, ::-1] if self.train and self.config.hflip and rng.random() < 0.5 else window

    def _with_pil(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        size, config = self.config.size, self.config
        if min(image.size) < size:
            image = F.resize(image, size)
        if self.crop == "random_resized":
            width, height = image.size
            area = rng.uniform(*config.crop_scale) * width * height
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            w, h = min(width, round(np.sqrt(area * aspect))), min(height, round(np.sqrt(area / aspect)))
            top, left = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
            image = F.resized_crop(image, top, left, h, w, [size, size], antialias=True)
        elif self.crop == "center":
            image = F.center_crop(F.resize(image, size), [size, size])
        if self.train and config.color_jitter:
            low, high = 1 - config.color_jitter, 1 + config.color_jitter
            image = F.adjust_brightness(image, rng.uniform(low, high))
            image = F.adjust_contrast(image, rng.uniform(low, high))
            image = F.adjust_saturation(image, rng.uniform(low, high))
        pixels = np.asarray(image).transpose(2, 0, 1)
        if self.crop == "random":
            return self._window_and_flip(pixels, rng)
        return pixels[:, :, ::-1] if self.train and config.hflip and rng.random() < 0.5 else pixels


def decode_jpeg_array(data: bytes) -> np.ndarray:
    """(3, H, W) uint8 RGB of JPEG bytes; ValueError if undecodable."""
    try:
        return decode_jpeg(data, mode="RGB").numpy()
    except RuntimeError as exc:  # not a JPEG, truncated, corrupt
        raise ValueError(f"cannot decode jpg: {str(exc).splitlines()[0].rpartition(', ')[2]}") from None


def stack_images(arrays: list[np.ndarray]) -> torch.Tensor:
    """(B, 3, H, W) uint8 from (3, H, W) arrays or views."""
    return torch.from_numpy(np.stack(arrays))


def normalize_batch(images: torch.Tensor, config: AugmentConfig, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> normalised floats, on whatever device the batch is on."""
    images = images.to(dtype)
    if config.normalize == "none":
        return images / 255
    mean, std = (torch.tensor(v, dtype=dtype, device=images.device).view(1, 3, 1, 1)
                 for v in NORMALIZATION[config.normalize])
    return (images - mean) / std
