"""The backbone builder: feature maps, last blocks, freezing, weights from local files only."""

import re
import typing

import pytest
import torch
from torch import nn

from facetrain.backbones import FACENET_FILES, build_backbone
from facetrain.model_config import FaceModelConfig

# name: (input side, channels, feature-map side, where the last block starts, the sub-modules that train)
BACKBONES = {
    "small": (64, 128, 4, "block4", ("block4",)),
    "inception_resnet_v1": (80, 1792, 1, "block8", ("block8",)),
    "resnet18": (64, 512, 2, "layer4", ("layer4",)),
    "resnet50": (64, 2048, 2, "layer4", ("layer4",)),
    "densenet201": (64, 1920, 2, "features.transition3",
                    ("features.transition3", "features.denseblock4", "features.norm5")),
    "vgg16": (32, 512, 1, "features.23", ("features.24", "features.26", "features.28")),  # conv5_1-3
}


@pytest.fixture(scope="module")
def frozen():
    """Each backbone built once, with freeze: all_but_last_block."""
    backbones = {name: build_backbone(name) for name in BACKBONES}
    for backbone in backbones.values():
        backbone.freeze_all_but_last_block()
    return backbones


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """A torchvision ResNet-50 state dict, classifier ``fc.*`` included, as torchvision's release file."""
    from torchvision.models import resnet50

    torch.manual_seed(0)
    state = resnet50(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(state, path)
    return path, state


def in_last_block(name: str, trainable: tuple[str, ...]) -> bool:
    return name.startswith(tuple(f"body.{module}." for module in trainable))


def test_every_configured_backbone_is_covered():
    assert set(typing.get_args(typing.get_type_hints(FaceModelConfig)["backbone"])) == set(BACKBONES)


@pytest.mark.parametrize("name", BACKBONES)
def test_feature_map_and_channels(frozen, name):
    side, channels, feature_side, _, _ = BACKBONES[name]
    backbone = frozen[name].eval()
    with torch.no_grad():
        assert backbone(torch.randn(2, 3, side, side)).shape == (2, channels, feature_side, feature_side)
    assert backbone.channels == channels


def test_vgg16_keeps_only_its_convolutions(frozen):
    names = [name for name, _ in frozen["vgg16"].named_parameters()]
    assert all(name.startswith("body.features.") for name in names)  # no fc6-8 (pre_logits, head)
    assert sum(p.numel() for p in frozen["vgg16"].parameters()) == 14_714_688  # VGG-16's 13 conv layers


@pytest.mark.parametrize("name", BACKBONES)
def test_only_the_last_block_trains_and_frozen_norms_keep_their_statistics(frozen, name):
    _, _, _, last_block, trainable = BACKBONES[name]
    backbone = frozen[name].train()
    assert backbone.last_block == last_block
    parameters = dict(backbone.named_parameters())
    assert {n for n, p in parameters.items() if p.requires_grad} == {n for n in parameters
                                                                      if in_last_block(n, trainable)}
    for module_name, module in backbone.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.training == in_last_block(module_name + ".", trainable), module_name


def test_inception_resnet_v1_weights_from_where_facenet_pytorch_caches_them(tmp_path, monkeypatch):
    from facenet_pytorch import InceptionResnetV1

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "checkpoints" / FACENET_FILES["vggface2"]
    with pytest.raises(FileNotFoundError, match=rf"'vggface2' asked for, but {re.escape(str(cached))} does not "
                                                r"exist \(this machine cannot download them"):
        build_backbone("inception_resnet_v1", "vggface2")
    source = InceptionResnetV1(pretrained=None, classify=True, num_classes=8631)  # as the released file
    cached.parent.mkdir()
    torch.save(source.state_dict(), cached)
    loaded = build_backbone("inception_resnet_v1", "vggface2").body.state_dict()
    source_state = source.state_dict()
    assert loaded.keys() < source_state.keys()
    assert [key for key, tensor in loaded.items() if not torch.equal(tensor, source_state[key])] == []


def test_resnet50_weights_from_a_torchvision_file_without_its_classifier(resnet50_file):
    path, state = resnet50_file
    loaded = build_backbone("resnet50", "file", str(path)).body.state_dict()
    assert loaded.keys() == state.keys() - {"fc.weight", "fc.bias"}
    assert [key for key, tensor in loaded.items() if not torch.equal(tensor, state[key])] == []


@pytest.mark.parametrize(("change", "mismatches"), [
    (lambda state: {k.replace("layer4.0.bn1", "layer4.0.norm1"): v for k, v in state.items()},
     "missing (5): layer4.0.bn1.weight, layer4.0.bn1.bias, layer4.0.bn1.running_mean, ...; "
     "unexpected (5): layer4.0.norm1.weight, layer4.0.norm1.bias, layer4.0.norm1.running_mean, ..."),
    (lambda state: state | {"conv1.weight": torch.zeros(64, 3, 3, 3)},
     "other shapes (1): conv1.weight (64, 3, 3, 3) for (64, 3, 7, 7)"),
], ids=["renamed", "reshaped"])
def test_a_file_that_does_not_fit_names_the_path_and_the_first_keys(resnet50_file, tmp_path, change, mismatches):
    path = tmp_path / "changed.pth"
    torch.save(change(resnet50_file[1]), path)
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path} does not fit resnet50: {mismatches}')}$"):
        build_backbone("resnet50", "file", str(path))


def test_weights_are_asked_for_in_a_form_the_backbone_has(tmp_path):
    missing = tmp_path / "resnet50.pth"
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(missing))} does not exist"):
        build_backbone("resnet50", "file", str(missing))
    with pytest.raises(ValueError, match="'vggface2' is a facenet-pytorch set; for resnet50 use 'file'"):
        build_backbone("resnet50", "vggface2")
    with pytest.raises(ValueError, match="needs a pretrained_path"):
        build_backbone("resnet50", "file")
    with pytest.raises(ValueError, match="the small backbone has no pretrained weights"):
        build_backbone("small", "file", str(missing))
