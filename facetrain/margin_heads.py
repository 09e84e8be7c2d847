"""Additive-margin softmax heads on unit embeddings, as users of face trainers expect beyond
the paper's triplet loss (insightface arcface_torch ``losses.py`` uses the same formulas).

    CosFace (Wang et al., CVPR 2018):  s · (cos θ_y − m),   others s · cos θ_j   (m = 0.35)
    ArcFace (Deng et al., CVPR 2019):  s · cos(θ_y + m),    others s · cos θ_j   (m = 0.5)

with cos θ_j = <e, w_j> for unit embedding e and unit class centre w_j, scale s = 64.  ArcFace's
target logit stays monotone in θ past θ + m > π by the usual fallback cos θ − m·sin m.
The centres are replicated on every rank (a full softmax; CASIA's 10,575 x 128 fit easily).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MarginHead(nn.Module):
    def __init__(self, num_classes: int, embedding_dim: int, kind: str, scale: float = 64.0,
                 margin: float | None = None):
        super().__init__()
        if kind not in ("arcface", "cosface"):
            raise ValueError(f"kind must be arcface or cosface, got {kind!r}")
        self.kind, self.scale = kind, scale
        self.margin = margin if margin is not None else (0.5 if kind == "arcface" else 0.35)
        self.centres = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.centres, std=0.01)

    def logits(self, embeddings_BD: torch.Tensor, labels_B: torch.Tensor) -> torch.Tensor:
        cosine_BC = (embeddings_BD @ F.normalize(self.centres, dim=1).T).clamp(-1, 1)
        target = cosine_BC.gather(1, labels_B[:, None])
        if self.kind == "cosface":
            adjusted = target - self.margin
        else:
            sine = (1 - target.pow(2)).clamp_min(0).sqrt()
            with_margin = target * math.cos(self.margin) - sine * math.sin(self.margin)
            # past θ + m = π, cos(θ + m) would rise again: fall back to a linear penalty
            adjusted = torch.where(target > math.cos(math.pi - self.margin), with_margin,
                                   target - math.sin(math.pi - self.margin) * self.margin)
        return self.scale * cosine_BC.scatter(1, labels_B[:, None], adjusted)

    def forward(self, embeddings_BD: torch.Tensor, labels_B: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the margin logits."""
        logits = self.logits(embeddings_BD.to(self.centres.dtype), labels_B)
        return F.cross_entropy(logits.float(), labels_B)  # in float32 even when the model runs in bf16
