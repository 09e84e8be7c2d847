"""Decoding (PIL) and augmentation (torchvision transforms.v2) of stream samples, per task."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import torch
from PIL import Image
from torchvision.transforms import v2

IMAGE_FIELDS = ("jpg", "png")
NORMALIZATION = {
    # FaceNet's fixed_image_standardization: (x - 127.5) / 128
    "facenet": ([0.5, 0.5, 0.5], [128 / 255] * 3),
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time transforms; evaluation uses only resize + normalisation."""

    size: int = 112
    """Output side in pixels."""
    crop_scale: tuple[float, float] = (0.85, 1.0)
    """RandomResizedCrop area range; (1, 1) resizes without cropping."""
    hflip: bool = True
    color_jitter: float = 0.0
    """Brightness, contrast and saturation jitter strength; 0 disables."""
    normalize: Literal["facenet", "imagenet", "none"] = "facenet"


def decode_image(fields: dict, size_hint: int | None = None) -> torch.Tensor:
    """uint8 CHW RGB from a sample's jpg or png bytes; ValueError if undecodable.

    PIL, not torchvision.io (its decoders are deprecated since torchvision 0.29).  With a size
    hint, JPEG draft mode decodes at the smallest power-of-two reduction still >= the hint.
    """
    name = next((f for f in IMAGE_FIELDS if f in fields), None)
    if name is None:
        raise ValueError("no jpg or png field")
    try:
        image = Image.open(io.BytesIO(fields[name]))
        if size_hint and image.format == "JPEG":
            image.draft("RGB", (size_hint, size_hint))
        image = image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot decode {name}: {exc}") from None
    return v2.functional.pil_to_tensor(image)


def _normalize(config: AugmentConfig) -> list:
    steps = [v2.ToDtype(torch.float32, scale=True)]
    if config.normalize != "none":
        mean, std = NORMALIZATION[config.normalize]
        steps.append(v2.Normalize(mean, std))
    return steps


def build_transform(config: AugmentConfig) -> v2.Compose:
    steps = [v2.RandomResizedCrop(config.size, scale=config.crop_scale, ratio=(0.9, 1.1), antialias=True)]
    if config.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if config.color_jitter:
        j = config.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    return v2.Compose(steps + _normalize(config))


def build_eval_transform(config: AugmentConfig) -> v2.Compose:
    return v2.Compose([v2.Resize((config.size, config.size), antialias=True), *_normalize(config)])
