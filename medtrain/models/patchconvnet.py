"""PatchConvNet (Touvron et al. 2021; papers/patchconvnet-attention-aggregation-idc.txt §III; REFERENCE.md §3):
a convolutional stem to patches, a column of residual SE-conv blocks at constant resolution, and one
class-attention block whose single CLS query weighs the patches; the classifier reads the CLS token.

S60 (``full``): d = 384, 60 blocks, 1 head, qkv bias, LayerNorm eps 1e-6, layer scale 1e-4, class-attention
MLP 3d (25.2 M parameters at 1000 classes).  ``cpu``: the same code with d = 64 and 4 blocks.

The stem's total stride is ``patch_size`` (16: 224 px -> 14x14 patches; the IDC seed's 64-patch setting,
§V-C, is 8x8, e.g. patch_size 8 at 64 px or 16 at 128 px): the stem keeps its four 3x3 convolutions and the
first log2(patch_size) of them stride 2, so every patch size has the same parameters and loads the same file.

Module names follow deit's ``patchconvnet_models.py`` so that its checkpoints load.
"""

from __future__ import annotations

import math

import torch
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models._efficientnet_blocks import SqueezeExcite
from torch import nn

from medtrain.models.base import MedicalModel

FLAVOURS = {"full": {"dim": 384, "depth": 60}, "cpu": {"dim": 64, "depth": 4}}
PATCH_SIZE = {"full": 16, "cpu": 8}
STEM_CONVOLUTIONS = 4
LAYER_SCALE = 1e-4  # S60 (S120 and larger: 1e-6)
CLASS_MLP_RATIO = 3.0
NORM_EPS = 1e-6

Grid = tuple[int, int]


class ConvStem(nn.Module):
    """3 -> d/8 -> d/4 -> d/2 -> d, 3x3 convolutions without bias, GELU between, no norm."""

    def __init__(self, dim: int, patch_size: int):
        super().__init__()
        downsamplings = int(math.log2(patch_size)) if patch_size > 0 else -1
        if 2**downsamplings != patch_size or downsamplings > STEM_CONVOLUTIONS:
            raise ValueError(f"patch_size must be a power of 2 from 1 to {2**STEM_CONVOLUTIONS}, got {patch_size}")
        widths = [3, dim // 8, dim // 4, dim // 2, dim]
        layers: list[nn.Module] = []
        for index in range(STEM_CONVOLUTIONS):
            if index:
                layers.append(nn.GELU())
            stride = 2 if index < downsamplings else 1
            # each convolution in its own Sequential: the checkpoints' keys are proj.{0,2,4,6}.0.weight
            layers.append(nn.Sequential(nn.Conv2d(widths[index], widths[index + 1], 3, stride, 1, bias=False)))
        self.proj = nn.Sequential(*layers)

    def forward(self, images_BCHW: torch.Tensor) -> torch.Tensor:
        return self.proj(images_BCHW)


class SqueezeExciteConv(nn.Module):
    """Tokens -> grid -> 1x1 conv, GELU, depthwise 3x3, GELU, squeeze-excite (1/4), 1x1 conv -> tokens."""

    def __init__(self, dim: int):
        super().__init__()
        self.qkv_pos = nn.Sequential(
            nn.Conv2d(dim, dim, 1),
            nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim),
            nn.GELU(),
            SqueezeExcite(dim, rd_ratio=0.25),
            nn.Conv2d(dim, dim, 1),
        )

    def forward(self, tokens_BNC: torch.Tensor, grid: Grid) -> torch.Tensor:
        B, _, C = tokens_BNC.shape
        features = self.qkv_pos(tokens_BNC.transpose(1, 2).reshape(B, C, *grid))
        return features.flatten(2).transpose(1, 2)


class ConvBlock(nn.Module):
    """tokens + drop_path(γ ⊙ SqueezeExciteConv(LayerNorm(tokens)))."""

    def __init__(self, dim: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = SqueezeExciteConv(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.gamma_1 = nn.Parameter(torch.full((dim,), LAYER_SCALE))

    def forward(self, tokens_BNC: torch.Tensor, grid: Grid) -> torch.Tensor:
        return tokens_BNC + self.drop_path(self.gamma_1 * self.attn(self.norm1(tokens_BNC), grid))


class ClassAttention(nn.Module):
    """One query from the CLS token; keys and values from CLS and every patch.  Returns the new CLS
    (B, 1, C) and the pre-softmax logits (B, heads, 1, 1 + N)."""

    def __init__(self, dim: int, num_heads: int = 1):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens_BNC: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        query_BH1D = self._split_heads(self.q(tokens_BNC[:, :1])) * self.scale
        logits_BH1N = query_BH1D @ self._split_heads(self.k(tokens_BNC)).transpose(-2, -1)
        pooled_BH1D = logits_BH1N.softmax(-1) @ self._split_heads(self.v(tokens_BNC))
        return self.proj(pooled_BH1D.transpose(1, 2).flatten(2)), logits_BH1N

    def _split_heads(self, x_BNC: torch.Tensor) -> torch.Tensor:
        B, N, C = x_BNC.shape
        return x_BNC.reshape(B, N, self.num_heads, C // self.num_heads).transpose(1, 2)


class ClassAttentionBlock(nn.Module):
    """cls += γ1 ⊙ ClassAttention(LN([cls, patches])); cls += γ2 ⊙ MLP(LN(cls))."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = ClassAttention(dim)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, int(dim * CLASS_MLP_RATIO))
        self.gamma_1 = nn.Parameter(torch.full((dim,), LAYER_SCALE))
        self.gamma_2 = nn.Parameter(torch.full((dim,), LAYER_SCALE))

    def forward(self, patches_BNC: torch.Tensor, cls_B1C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, logits_BH1N = self.attn(self.norm1(torch.cat([cls_B1C, patches_BNC], 1)))
        cls_B1C = cls_B1C + self.gamma_1 * pooled
        return cls_B1C + self.gamma_2 * self.mlp(self.norm2(cls_B1C)), logits_BH1N


class PatchConvNet(MedicalModel):
    head_name = "head"

    def __init__(self, num_classes: int, dim: int, depth: int, patch_size: int, drop_path: float):
        super().__init__()
        self.patch_embed = ConvStem(dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(ConvBlock(dim, drop_path) for _ in range(depth))  # same rate in every block
        self.blocks_token_only = nn.ModuleList([ClassAttentionBlock(dim)])
        self.norm = nn.LayerNorm(dim, eps=NORM_EPS)
        self.head = nn.Linear(dim, num_classes)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_linear)

    def forward(self, images_BCHW: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and ``class_attention`` (B, h, w): the CLS query's weights over the patches (sum 1)."""
        features = self.patch_embed(images_BCHW)
        grid = (features.shape[2], features.shape[3])
        patches = features.flatten(2).transpose(1, 2)
        for block in self.blocks:
            patches = block(patches, grid)
        cls = self.cls_token.expand(len(patches), -1, -1)
        (class_block,) = self.blocks_token_only
        cls, logits_BH1N = class_block(patches, cls)
        # LayerNorm is per token: normalising the CLS alone equals normalising [cls, patches] and taking [:, 0]
        logits = self.head(self.norm(cls[:, 0]))
        # The map is the softmax of the pre-softmax logits over the patches only (REFERENCE.md §3's hook on
        # attn.id, CLS dropped and renormalised), averaged over heads.
        weights = logits_BH1N[..., 1:].softmax(-1).mean(1)
        return logits, {"class_attention": weights.reshape(len(weights), *grid)}

    def attention_heatmap(self, attention: dict[str, torch.Tensor]) -> torch.Tensor:
        return attention["class_attention"]


def build_patchconvnet_s60(
    num_classes: int, flavour: str, *, patch_size: int = 0, drop_path: float = 0.0
) -> PatchConvNet:
    """``patch_size``: the stem's total stride (16 full, 8 cpu when 0).  ``drop_path``: stochastic depth, the
    same in every block (REFERENCE.md §6½ decision 3: the per-model values are unconfirmed; default none)."""
    return PatchConvNet(
        num_classes, **FLAVOURS[flavour], patch_size=patch_size or PATCH_SIZE[flavour], drop_path=drop_path
    )


def _init_linear(module: nn.Module) -> None:
    """Linear weights truncated normal (0.02) and zero biases; LayerNorm and convolutions as PyTorch's."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
