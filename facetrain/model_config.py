"""The attention FaceNet's config section (facetrain/model.py builds the network from it).
No torch here: ``launch`` validates job configs before any process starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class FaceModelConfig:
    """The embedding network."""

    backbone: Literal["inception_resnet_v1", "resnet50", "resnet18", "densenet201", "vgg16", "small"] = (
        "inception_resnet_v1")
    """facenet-pytorch's InceptionResnetV1, a timm model without its head, or ``small``: four conv blocks
    for CPU demos and tests (64-112 px inputs).  facetrain/backbones.py builds it."""
    pretrained: Literal["none", "vggface2", "casia-webface", "file"] = "none"
    """Backbone weights, never downloaded: facenet-pytorch's sets (inception_resnet_v1 only), or ``file``
    (a state dict at pretrained_path, e.g. torchvision's or timm's; its classifier is dropped)."""
    pretrained_path: str = ""
    """Local weights file; empty: the facenet-pytorch file name under $TORCH_HOME/checkpoints."""
    attention: bool = True
    attention_maps: int = 16
    """K, the paper's 16."""
    keras_literal: bool = False
    """Reproduce the official Keras layer (reads channels 0-2 only) instead of the paper's form."""
    merge: Literal["concat", "add"] = "concat"
    embedding_dim: int = 128
    image_size: int = 160
    freeze: Literal["all_but_last_block", "none"] = "all_but_last_block"
    """The paper's: only the backbone's last block (from its last stage on), the attention and the head train;
    frozen layers keep their batch-norm statistics."""
    dropout: float = 0.0
    """Dropout before the embedding layer."""

    def __post_init__(self) -> None:
        if min(self.attention_maps, self.embedding_dim, self.image_size) < 1:
            raise ValueError(f"attention_maps, embedding_dim and image_size must be at least 1, got "
                             f"{self.attention_maps}, {self.embedding_dim}, {self.image_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
