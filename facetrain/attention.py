"""Soft Attention (Datta et al., iMIMIC@MICCAI 2021; papers/soft-attention-facenet-brain-tumor.txt
§IV; REFERENCE.md §1), shared by the face and the medical tasks.

    f_sa = γ · t · Σ_k softmax_spatial(W_k * t)                      (paper Eq. 1)

Default (the paper's intended reading, REFERENCE.md §6½ decision 1): a 3x3 convolution over
*all* channels to K = 16 maps, ReLU, softmax over the H·W positions of each map, the K maps
summed (each image's aggregate sums to K), features times map times a trainable γ (init 0.01).
``keras_literal=True`` reproduces the official Keras layer exactly instead: its 3-D kernel
reads only channels 0-2 and spans all rows (REFERENCE.md §1.2), and it has no γ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SoftAttention(nn.Module):
    def __init__(self, channels: int, maps: int = 16, keras_literal: bool = False, gamma_init: float | None = 0.01):
        super().__init__()
        self.channels, self.maps, self.keras_literal = channels, maps, keras_literal
        if keras_literal:
            # Keras kernel (ch, 3, 3, 1, m) laid out for conv2d over (channels 0..2, rows, cols).
            self.weight = nn.Parameter(torch.empty(maps, 3, channels, 3))
            self.bias = nn.Parameter(torch.zeros(maps))
            nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")  # == Keras he_uniform, fan_in 9·C
            self.gamma = None
        else:
            self.conv = nn.Conv2d(channels, maps, kernel_size=3, padding=1)
            # shape (1,), not a 0-dim scalar: DeepSpeed 0.19's parameter broadcast fails on 0-dim tensors
            self.gamma = nn.Parameter(torch.full((1,), float(gamma_init))) if gamma_init is not None else None

    def attention_maps(self, features_BCHW: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) maps, each a softmax over the H·W positions."""
        B, C, H, W = features_BCHW.shape
        if self.keras_literal:
            if C < 3:
                raise ValueError(f"the literal Keras layer reads channels 0-2; got {C} channels")
            pad = C - 1  # Keras 'same' padding of a size-C kernel along the rows
            padded = F.pad(features_BCHW[:, :3], (1, 1, pad // 2, pad - pad // 2))
            logits = F.conv2d(padded, self.weight, self.bias)
        else:
            logits = self.conv(features_BCHW)
        return F.relu(logits).flatten(2).softmax(-1).view(B, self.maps, H, W)

    def forward(self, features_BCHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(attended features (B, C, H, W), attention maps (B, K, H, W))."""
        maps = self.attention_maps(features_BCHW)
        attended = maps.sum(1, keepdim=True) * features_BCHW
        if self.gamma is not None:
            attended = self.gamma * attended
        return attended, maps


class AttentionMerge(nn.Module):
    """Attended and raw features merged as in the reference implementation (max-pool 2 with
    Keras 'same' rounding, then concatenation) or added (``mode='add'``)."""

    def __init__(self, channels: int, mode: str = "concat"):
        super().__init__()
        if mode not in ("concat", "add"):
            raise ValueError(f"merge must be 'concat' or 'add', got {mode!r}")
        self.mode = mode
        self.pool = nn.MaxPool2d(2, ceil_mode=True)  # == Keras MaxPooling2D(2, padding='same')
        self.out_channels = 2 * channels if mode == "concat" else channels

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return ((height + 1) // 2, (width + 1) // 2) if self.mode == "concat" else (height, width)

    def forward(self, raw_BCHW: torch.Tensor, attended_BCHW: torch.Tensor) -> torch.Tensor:
        if self.mode == "add":
            return raw_BCHW + attended_BCHW
        return torch.cat([self.pool(raw_BCHW), self.pool(attended_BCHW)], 1)  # Keras order: [conv, attention]
