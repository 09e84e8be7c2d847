"""The attention FaceNet's config section (facetrain/model.py builds the network from it).
No torch here: ``launch`` validates job configs before any process starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class FaceModelConfig:
    """The embedding network."""

    backbone: Literal["inception_resnet_v1", "resnet50", "small"] = "inception_resnet_v1"
    """``small``: four conv blocks for CPU demos and tests (64-112 px inputs)."""
    pretrained: Literal["none", "vggface2", "casia-webface", "file"] = "none"
    """Backbone weights: facenet-pytorch's sets, or ``file`` (a state dict at pretrained_path)."""
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
    dropout: float = 0.0
    """Dropout before the embedding layer."""
