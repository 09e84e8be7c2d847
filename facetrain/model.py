"""The attention FaceNet (papers/soft-attention-facenet-brain-tumor.txt §IV-B, Fig. 7):
backbone -> Soft Attention on its last feature map -> merge with the unattended features ->
L2 normalisation -> fully connected layer to 128 -> L2-normalised embedding.

The backbone comes from facetrain/backbones.py (facenet-pytorch's InceptionResnetV1, a timm model
or a small CPU CNN; weights only from local files).  The paper trains only the last block of the
backbone plus the attention and the head (``freeze: all_but_last_block``); frozen layers also
keep their batch-norm statistics fixed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facetrain.attention import AttentionMerge, SoftAttention
from facetrain.backbones import build_backbone
from facetrain.model_config import FaceModelConfig


class AttentionFaceNet(nn.Module):
    def __init__(self, config: FaceModelConfig):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone, config.pretrained, config.pretrained_path)
        if config.freeze == "all_but_last_block":
            self.backbone.freeze_all_but_last_block()
        channels = self.backbone.channels
        height, width = self._feature_size()
        if config.attention:
            self.attention = SoftAttention(channels, config.attention_maps, config.keras_literal)
            self.merge = AttentionMerge(channels, config.merge)
            height, width = self.merge.output_size(height, width)
            channels = self.merge.out_channels
        else:
            self.attention = self.merge = None
        self.dropout = nn.Dropout(config.dropout)
        self.embed = nn.Linear(channels * height * width, config.embedding_dim)

    @torch.no_grad()
    def _feature_size(self) -> tuple[int, int]:
        was_training = self.backbone.training
        self.backbone.eval()
        size = self.config.image_size
        height, width = self.backbone(torch.zeros(1, 3, size, size)).shape[2:]
        self.backbone.train(was_training)
        return height, width

    def forward(self, images_BCHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(unit embeddings (B, embedding_dim), attention maps (B, K, H, W) or None)."""
        features = self.backbone(images_BCHW)
        maps = None
        if self.attention is not None:
            attended, maps = self.attention(features)
            features = self.merge(features, attended)
        features = F.normalize(features.flatten(1), dim=1)  # the paper's L2 normalisation after attention
        return F.normalize(self.embed(self.dropout(features)), dim=1), maps
