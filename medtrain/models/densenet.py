"""DenseNet201 (torchvision), plain and with the seed's Soft Attention head.

The seed (papers/soft-attention-facenet-brain-tumor.txt §III-B) puts Soft Attention into DenseNet201's 4th
dense block on its 7x7 map, "following the procedure used in the Inception ResNet V2" model; REFERENCE.md
§1.3 gives that procedure: everything after Keras ``layers[-28]`` = ``conv5_block29_1_relu`` is discarded,
i.e. dense layer 29 of block 4 is kept through its bottleneck (norm1 -> relu1 -> 1x1 conv1 -> norm2 -> relu2:
7x7x128 at 224 px, the input of its conv2), its conv2, dense layers 30-32 and norm5 are dropped; then Soft
Attention with K = 16 maps, max-pool 2 'same' of the raw and of the attended features, concatenation, ReLU,
dropout 0.5, flatten, linear.  The ``cpu`` flavour is the same code on a small block configuration; the cut
stays 3 dense layers before the end of the last block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import DenseNet

from facetrain.attention import AttentionMerge, SoftAttention
from medtrain.models.base import MedicalModel

FLAVOURS = {
    "full": {"growth_rate": 32, "block_config": (6, 12, 48, 32), "num_init_features": 64},  # densenet201
    "cpu": {"growth_rate": 32, "block_config": (2, 2, 2, 6), "num_init_features": 64},
}
IMAGE_SIZE = {"full": 224, "cpu": 64}
# Keras layers[-28] (REFERENCE.md §1.3): three whole dense layers (7 Keras layers each), then BN, ReLU,
# pooling and the Dense layer come after conv5_block29_1_relu.
LAYERS_AFTER_CUT = 3
ATTENTION_MAPS = 16


class DenseNetClassifier(DenseNet, MedicalModel):
    """torchvision's DenseNet (its module names, so its weight files load as they are)."""

    def forward(self, images_BCHW: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return super().forward(images_BCHW), {}


class DenseNetSoftAttention(MedicalModel):
    """``features`` of a torchvision DenseNet cut at the bottleneck of the last block's 3rd-last dense layer,
    then the Soft Attention head of REFERENCE.md §1.3 / §1.5 (``SAHead``)."""

    added_modules = ("attention",)

    def __init__(
        self,
        network: DenseNet,
        num_classes: int,
        image_size: int,
        keras_literal: bool,
        gamma_init: float | None,
        dropout: float,
    ):
        super().__init__()
        features = network.features
        block_name = [name for name, _ in features.named_children() if name.startswith("denseblock")][-1]
        block = features.get_submodule(block_name)
        names = list(block.keys())
        cut_layer = block[names[-1 - LAYERS_AFTER_CUT]]
        self.cut_modules = (
            f"features.{block_name}.{names[-1 - LAYERS_AFTER_CUT]}.conv2",
            *(f"features.{block_name}.{name}" for name in names[-LAYERS_AFTER_CUT:]),
            "features.norm5",
        )
        del cut_layer.conv2
        for name in names[-LAYERS_AFTER_CUT:]:
            del block[name]
        del features.norm5
        self.features = features
        channels = cut_layer.norm2.num_features  # bn_size * growth_rate = 128
        # Default: conv over all channels and a trainable γ from 0.01, as the seed's §III-B describes and as
        # REFERENCE.md §6½ decision 1 chooses; keras_literal=True is the official Keras layer (channels 0-2
        # only, and no γ whatever gamma_init says; §1.2).  gamma_init=None: all channels, no γ.
        self.attention = SoftAttention(channels, ATTENTION_MAPS, keras_literal=keras_literal, gamma_init=gamma_init)
        self.merge = AttentionMerge(channels, "concat")
        side = _feature_side(image_size, _count_transitions(features))
        height, width = self.merge.output_size(side, side)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.merge.out_channels * height * width, num_classes)

    def forward_features(self, images_BCHW: torch.Tensor) -> torch.Tensor:
        """(B, 128, h, w): the bottleneck output (relu2) of the cut dense layer (REFERENCE.md §1.5)."""
        *before, block = self.features.children()
        x = images_BCHW
        for module in before:
            x = module(x)
        *whole_layers, cut_layer = block.values()
        inputs = [x]
        for layer in whole_layers:
            inputs.append(layer(inputs))
        return cut_layer.relu2(cut_layer.norm2(cut_layer.bn_function(inputs)))

    def forward(self, images_BCHW: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        features = self.forward_features(images_BCHW)
        attended, maps = self.attention(features)
        merged = F.relu(self.merge(features, attended))  # Keras order: [pooled raw, pooled attended]
        return self.classifier(self.dropout(merged).flatten(1)), {"soft_attention": maps}

    def attention_heatmap(self, attention: dict[str, torch.Tensor]) -> torch.Tensor:
        """The K maps summed, as the layer applies them (each image's map sums to K)."""
        return attention["soft_attention"].sum(1)


def build_densenet201(num_classes: int, flavour: str) -> DenseNetClassifier:
    return DenseNetClassifier(**FLAVOURS[flavour], num_classes=num_classes)


def build_densenet201_soft_attention(
    num_classes: int,
    flavour: str,
    *,
    image_size: int = 0,
    keras_literal: bool = False,
    gamma_init: float | None = 0.01,
    dropout: float = 0.5,
) -> DenseNetSoftAttention:
    """``image_size`` (square input side; 224 full, 64 cpu when 0) fixes the flattened head's width."""
    network = DenseNet(**FLAVOURS[flavour], num_classes=1)  # its classifier is discarded
    return DenseNetSoftAttention(
        network, num_classes, image_size or IMAGE_SIZE[flavour], keras_literal, gamma_init, dropout
    )


def _count_transitions(features: nn.Module) -> int:
    return sum(1 for name, _ in features.named_children() if name.startswith("transition"))


def _feature_side(image_size: int, transitions: int) -> int:
    side = (image_size - 1) // 2 + 1  # conv0: 7x7, stride 2, padding 3
    side = (side - 1) // 2 + 1  # pool0: 3x3 max, stride 2, padding 1
    side >>= transitions  # each transition: 2x2 average pool, stride 2
    if side < 1:
        raise ValueError(f"image_size {image_size} is too small for DenseNet ({transitions} transitions)")
    return side
