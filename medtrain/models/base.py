"""What every model of the medical table is: images (B, 3, H, W) -> (logits (B, classes), named attention
maps), plus the one heat map per image that the task draws over it, and how its weights load."""

from __future__ import annotations

import torch
from torch import nn


class MedicalModel(nn.Module):
    """Base of the table's models.  ``forward(images_BCHW) -> (logits_BN, attention)`` where ``attention``
    maps a name to a tensor (``{}`` for a model without attention maps).

    The three names below tell ``load_pretrained`` how a weight file relates to the model: ``head_name`` is the
    classifier (loaded only where its shape fits), ``added_modules`` are modules a backbone file does not have,
    ``cut_modules`` the parts of the full backbone this model drops (their keys in a file are ignored)."""

    head_name: str = "classifier"
    added_modules: tuple[str, ...] = ()
    cut_modules: tuple[str, ...] = ()

    def attention_heatmap(self, attention: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """One map per image (B, h, w) on the model's feature grid, or None for a model without one."""
        return None


def to_three_channels(images_BCHW: torch.Tensor) -> torch.Tensor:
    """Greyscale (B, 1, H, W) images repeated to the 3 channels every model takes (a view, no copy);
    3-channel images unchanged.  Apply before the 3-channel normalisation, as ImageNet-trained weights expect."""
    channels = images_BCHW.shape[1]
    if channels == 3:
        return images_BCHW
    if channels == 1:
        return images_BCHW.expand(-1, 3, -1, -1)
    raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(images_BCHW.shape)}")
