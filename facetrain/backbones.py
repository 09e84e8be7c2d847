"""The one backbone builder of both tracks: images (B, 3, H, W) -> last feature map (B, C, h, w).

``build_backbone(name, pretrained, pretrained_path)`` gives a timm CNN without its head
(``timm.create_model(name, num_classes=0, global_pool="")``, run through ``forward_features``),
facenet-pytorch's InceptionResnetV1 cut before its pooling (timm does not ship it), or ``small``, a
4-block CNN for CPU demos and tests.  Weights are never downloaded: they come from a local file, and a
file that is not there, or that does not fit the network, is an error naming the path.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

# facenet-pytorch 2.5.3 release files (what InceptionResnetV1(pretrained=...) would download).
FACENET_FILES = {"vggface2": "20180402-114759-vggface2.pt", "casia-webface": "20180408-102900-casia-webface.pt"}
# Classifier modules of the full networks, dropped from weight files: ResNet ``fc``, DenseNet and torchvision
# VGG ``classifier``, timm VGG ``pre_logits`` (fc6-7) and ``head``; facenet-pytorch's identity ``logits``.
TIMM_HEADS = ("fc", "classifier", "head", "pre_logits")
FACENET_HEADS = ("logits",)

NamedModules = list[tuple[str, nn.Module]]


class Backbone(nn.Module):
    """``body.forward_features``: images (B, 3, H, W) -> feature map (B, ``channels``, h, w).

    ``last_block`` names the sub-module of ``body`` where the last block starts; the modules registered
    before it (registration order is forward order in these networks) are what ``freeze_all_but_last_block``
    freezes, so a final norm after the block (DenseNet's ``norm5``) keeps training.
    """

    def __init__(self, body: nn.Module, channels: int, last_block: str):
        super().__init__()
        self.body, self.channels, self.last_block = body, channels, last_block
        self.frozen: list[nn.Module] = []

    def forward(self, images_BCHW: torch.Tensor) -> torch.Tensor:
        return self.body.forward_features(images_BCHW)

    def freeze_all_but_last_block(self) -> None:
        """The paper trains only the backbone's last block (papers/soft-attention-facenet-brain-tumor.txt §IV-B)."""
        self.frozen = [module for _, module in _split_at(self.body, self.last_block)[0]]
        for module in self.frozen:
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for module in self.frozen:  # frozen layers keep their batch-norm statistics
            module.eval()
        return self


class _Stages(nn.Sequential):
    """Named stages run in order, with the ``forward_features`` a timm model has."""

    def forward_features(self, images_BCHW: torch.Tensor) -> torch.Tensor:
        return self(images_BCHW)


def build_backbone(name: str, pretrained: str = "none", pretrained_path: str = "") -> Backbone:
    """``name``: ``inception_resnet_v1``, ``small`` or a timm model name.  ``pretrained``: ``none``, a
    facenet-pytorch set (``vggface2``, ``casia-webface``; inception_resnet_v1 only, read from
    ``pretrained_path`` or from where facenet-pytorch caches it) or ``file`` (the state dict at
    ``pretrained_path``: .pt/.pth or .safetensors, classifier keys dropped)."""
    if name == "inception_resnet_v1":
        return _facenet_backbone(pretrained, pretrained_path)
    if name == "small":
        return _small_backbone(pretrained)
    return _timm_backbone(name, pretrained, pretrained_path)


def _timm_backbone(name: str, pretrained: str, pretrained_path: str) -> Backbone:
    import timm

    if pretrained in FACENET_FILES:
        raise ValueError(f"pretrained {pretrained!r} is a facenet-pytorch set; for {name} use 'file'")
    network = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    # num_classes=0 keeps VGG's ConvMlp pre-logits (fc6-7 as convolutions, 120M parameters) that
    # forward_features never runs; pruning the head drops it.
    network.prune_intermediate_layers(prune_head=True)
    if pretrained == "file":
        _load_weights(network, name, _weights_path(pretrained, pretrained_path), pretrained, TIMM_HEADS)
    return Backbone(network, network.num_features, _last_block(network))


def _last_block(network: nn.Module) -> str:
    """Where the last block starts: right after the last of timm's feature taps that layers with parameters
    follow.  ResNet: ``layer4``.  DenseNet: ``features.transition3`` (the transition into block 4 trains
    with it, as ResNet's layer4 trains its own downsampling; norm5, timm's last tap, follows it).  VGG:
    ``features.23`` (pool4, then conv5_1-3 and pool5: timm taps VGG before each pool, its last tap is
    the bare pool5)."""
    for tap in reversed([info["module"] for info in network.feature_info]):
        following = _split_at(network, tap)[1][1:]
        if any(True for _, module in following for _ in module.parameters()):
            return following[0][0]
    raise ValueError(f"no layers with parameters follow any feature tap of {type(network).__name__}")


def _split_at(body: nn.Module, name: str) -> tuple[NamedModules, NamedModules]:
    """(the sub-modules registered before ``name``, ``name`` and those after it): its earlier and later
    siblings at each level of its dotted path, in registration order."""
    before: NamedModules = []
    after: NamedModules = []
    parent, prefix = body, ""
    for part in name.split("."):
        children = list(parent.named_children())
        index = [child for child, _ in children].index(part)
        before += [(prefix + child, module) for child, module in children[:index]]
        after[:0] = [(prefix + child, module) for child, module in children[index + 1:]]  # run before the outer ones
        parent, prefix = parent.get_submodule(part), f"{prefix}{part}."
    return before, [(name, parent), *after]


def _facenet_backbone(pretrained: str, pretrained_path: str) -> Backbone:
    from facenet_pytorch import InceptionResnetV1

    network = InceptionResnetV1(pretrained=None, classify=False)
    if pretrained != "none":
        path = _weights_path(pretrained, pretrained_path)
        _load_weights(network, "inception_resnet_v1", path, pretrained, FACENET_HEADS)
    children = list(network.named_children())
    features = children[: [child for child, _ in children].index("avgpool_1a")]
    return Backbone(_Stages(OrderedDict(features)), network.last_linear.in_features, "block8")


def _small_backbone(pretrained: str) -> Backbone:
    if pretrained != "none":
        raise ValueError("the small backbone has no pretrained weights")
    blocks, channels = OrderedDict(), 3
    for index, width in enumerate((32, 64, 128, 128)):
        blocks[f"block{index + 1}"] = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.GroupNorm(8, width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.GroupNorm(8, width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2))
        channels = width
    return Backbone(_Stages(blocks), channels, "block4")


def _weights_path(pretrained: str, pretrained_path: str) -> Path:
    if pretrained_path:
        return Path(pretrained_path)
    if pretrained == "file":
        raise ValueError("pretrained: file needs a pretrained_path")
    from facenet_pytorch.models.inception_resnet_v1 import get_torch_home

    return Path(get_torch_home()) / "checkpoints" / FACENET_FILES[pretrained]  # where facenet-pytorch caches it


def _load_weights(network: nn.Module, name: str, path: Path, pretrained: str, heads: tuple[str, ...]) -> None:
    """Load the state dict at ``path`` into ``network``, less the keys under ``heads`` that it does not have;
    any other difference is an error."""
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {pretrained!r} asked for, but {path} does not exist "
            "(this machine cannot download them: copy the file there, set pretrained_path, "
            "or use pretrained: none)")
    from timm.models import load_state_dict  # .pt/.pth or .safetensors, unwraps "state_dict", strips "module."

    own = network.state_dict()
    state = {key: value for key, value in load_state_dict(str(path)).items()
             if key in own or key.split(".")[0] not in heads}
    mismatches = {
        "missing": [key for key in own if key not in state],
        "unexpected": [key for key in state if key not in own],
        "other shapes": [f"{key} {tuple(state[key].shape)} for {tuple(value.shape)}"
                         for key, value in own.items() if key in state and state[key].shape != value.shape]}
    if any(mismatches.values()):
        found = "; ".join(f"{kind} ({len(keys)}): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
                          for kind, keys in mismatches.items() if keys)
        raise ValueError(f"{path} does not fit {name}: {found}")
    network.load_state_dict(state)
