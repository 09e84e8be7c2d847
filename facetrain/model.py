"""The attention FaceNet (papers/soft-attention-facenet-brain-tumor.txt §IV-B, Fig. 7):
backbone -> Soft Attention on its last feature map -> merge with the unattended features ->
L2 normalisation -> fully connected layer to 128 -> L2-normalised embedding.

Backbones: facenet-pytorch's InceptionResnetV1 (last block ``block8``, 1792 channels),
torchvision's ResNet-50 (last block ``layer4``, 2048 channels), or a small 4-block CNN for CPU
demos and tests.  Pretrained weights are never
downloaded: they are read from a local file (``pretrained_path``, or the file name
facenet-pytorch would have cached under ``$TORCH_HOME/checkpoints``), and asking for weights
that are not there is an error naming the path.  The paper trains only the last block of the
backbone plus the attention and the head (``freeze: all_but_last_block``); frozen layers also
keep their batch-norm statistics fixed.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facetrain.attention import AttentionMerge, SoftAttention
from facetrain.model_config import FaceModelConfig

# facenet-pytorch 2.5.3 release files (what InceptionResnetV1(pretrained=...) would download).
FACENET_FILES = {"vggface2": "20180402-114759-vggface2.pt", "casia-webface": "20180408-102900-casia-webface.pt"}


def _facenet_backbone(config: FaceModelConfig) -> tuple[nn.Sequential, str]:
    from facenet_pytorch import InceptionResnetV1

    network = InceptionResnetV1(pretrained=None, classify=False)
    if config.pretrained in FACENET_FILES or config.pretrained == "file":
        default = Path(torch.hub.get_dir()) / "checkpoints" / FACENET_FILES.get(config.pretrained, "")
        state = _load_weights(Path(config.pretrained_path) if config.pretrained_path else default, config)
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}  # the classifier is unused
        network.load_state_dict(state)
    children = dict(network.named_children())
    names = list(children)[: list(children).index("avgpool_1a")]
    return nn.Sequential(OrderedDict((n, children[n]) for n in names)), "block8"


def _resnet_backbone(config: FaceModelConfig) -> tuple[nn.Sequential, str]:
    from torchvision.models import resnet50

    network = resnet50(weights=None)
    if config.pretrained == "file":
        network.load_state_dict(_load_weights(Path(config.pretrained_path), config))
    elif config.pretrained != "none":
        raise ValueError(f"pretrained {config.pretrained!r} is a facenet-pytorch set; for resnet50 use 'file'")
    layers = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return nn.Sequential(OrderedDict((n, getattr(network, n)) for n in layers)), "layer4"


def _small_backbone(config: FaceModelConfig) -> tuple[nn.Sequential, str]:
    if config.pretrained != "none":
        raise ValueError("the small backbone has no pretrained weights")
    blocks, channels = OrderedDict(), 3
    for index, width in enumerate((32, 64, 128, 128)):
        blocks[f"block{index + 1}"] = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.GroupNorm(8, width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.GroupNorm(8, width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2))
        channels = width
    return nn.Sequential(blocks), "block4"


def _load_weights(path: Path, config: FaceModelConfig) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {config.pretrained!r} asked for, but {path} does not exist "
            "(this machine cannot download them: copy the file there, set model.pretrained_path, "
            "or use pretrained: none)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


class AttentionFaceNet(nn.Module):
    def __init__(self, config: FaceModelConfig):
        super().__init__()
        self.config = config
        build = {"inception_resnet_v1": _facenet_backbone, "resnet50": _resnet_backbone,
                 "small": _small_backbone}[config.backbone]
        self.backbone, last_block = build(config)
        channels, height, width = self._feature_shape()
        if config.attention:
            self.attention = SoftAttention(channels, config.attention_maps, config.keras_literal)
            self.merge = AttentionMerge(channels, config.merge)
            height, width = self.merge.output_size(height, width)
            channels = self.merge.out_channels
        else:
            self.attention = self.merge = None
        self.dropout = nn.Dropout(config.dropout)
        self.embed = nn.Linear(channels * height * width, config.embedding_dim)
        self.frozen: list[nn.Module] = []
        if config.freeze == "all_but_last_block":
            for name, module in self.backbone.named_children():
                if name != last_block:
                    module.requires_grad_(False)
                    self.frozen.append(module)

    @torch.no_grad()
    def _feature_shape(self) -> tuple[int, int, int]:
        was_training = self.backbone.training
        self.backbone.eval()
        _, channels, height, width = self.backbone(torch.zeros(1, 3, self.config.image_size,
                                                               self.config.image_size)).shape
        self.backbone.train(was_training)
        return channels, height, width

    def train(self, mode: bool = True) -> AttentionFaceNet:
        super().train(mode)
        for module in self.frozen:  # frozen layers keep their batch-norm statistics
            module.eval()
        return self

    def forward(self, images_BCHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(unit embeddings (B, embedding_dim), attention maps (B, K, H, W) or None)."""
        features = self.backbone(images_BCHW)
        maps = None
        if self.attention is not None:
            attended, maps = self.attention(features)
            features = self.merge(features, attended)
        features = F.normalize(features.flatten(1), dim=1)  # the paper's L2 normalisation after attention
        return F.normalize(self.embed(self.dropout(features)), dim=1), maps
