"""Decoding (PIL) and augmentation (torchvision.transforms.v2 functional ops) of stream samples.

Workers emit uint8 batches (B, 3, H, W); ``normalize_batch`` turns them into floats on the
consumer's device.  Measured on the 2-core CPU machine (160x160 JPEG, per image): PIL decode
0.14-0.27 ms, crop + flip 0.03 ms, a resampling crop 0.26 ms, float normalisation 0.4 ms; and
float batches are 4x the bytes of uint8 through the workers' shared memory and the
host-to-device copy.  Hence the default is FaceNet's own augmentation (random crop of ``size``
pixels + horizontal flip, no resampling) and normalisation after the transfer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image
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
    """PIL image -> HWC uint8 array, with randomness from the generator it is given."""

    def __init__(self, config: AugmentConfig, train: bool):
        self.config, self.train = config, train

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        size, config = self.config.size, self.config
        if min(image.size) < size:
            image = F.resize(image, size)
        crop = config.crop if self.train else "center"
        if crop == "random_resized":
            width, height = image.size
            area = rng.uniform(*config.crop_scale) * width * height
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            w, h = min(width, round(np.sqrt(area * aspect))), min(height, round(np.sqrt(area / aspect)))
            top, left = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
            image = F.resized_crop(image, top, left, h, w, [size, size], antialias=True)
        elif crop == "center":
            image = F.center_crop(F.resize(image, size), [size, size])
        if self.train and config.color_jitter:
            low, high = 1 - config.color_jitter, 1 + config.color_jitter
            image = F.adjust_brightness(image, rng.uniform(low, high))
            image = F.adjust_contrast(image, rng.uniform(low, high))
            image = F.adjust_saturation(image, rng.uniform(low, high))
        if self.train and config.hflip and rng.random() < 0.5:
            image = F.horizontal_flip(image)  # in PIL: a numpy view with negative stride copies slowly
        pixels = np.asarray(image)
        if crop == "random":  # a view: the batch's one copy (np.stack) does the cropping, row by row
            top, left = int(rng.integers(pixels.shape[0] - size + 1)), int(rng.integers(pixels.shape[1] - size + 1))
            pixels = pixels[top : top + size, left : left + size]
        return pixels


def stack_images(arrays: list[np.ndarray]) -> torch.Tensor:
    """(B, 3, H, W) uint8, channels-last in memory (what convolutions on GPUs prefer)."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def normalize_batch(images: torch.Tensor, config: AugmentConfig, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> normalised floats, on whatever device the batch is on."""
    images = images.to(dtype)
    if config.normalize == "none":
        return images / 255
    mean, std = (torch.tensor(v, dtype=dtype, device=images.device).view(1, 3, 1, 1)
                 for v in NORMALIZATION[config.normalize])
    return (images - mean) / std
