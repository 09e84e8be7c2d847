"""ResNet-50 (torchvision), the comparison network of papers/patchconvnet-attention-aggregation-idc.txt §II.
The ``cpu`` flavour is the same bottleneck network with one block per stage."""

from __future__ import annotations

import torch
from torchvision.models import ResNet
from torchvision.models.resnet import Bottleneck

from medtrain.models.base import MedicalModel

FLAVOURS = {"full": [3, 4, 6, 3], "cpu": [1, 1, 1, 1]}


class ResNetClassifier(ResNet, MedicalModel):
    """torchvision's ResNet (its module names, so its weight files load as they are)."""

    head_name = "fc"

    def forward(self, images_BCHW: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return super().forward(images_BCHW), {}


def build_resnet50(num_classes: int, flavour: str) -> ResNetClassifier:
    return ResNetClassifier(Bottleneck, FLAVOURS[flavour], num_classes=num_classes)
