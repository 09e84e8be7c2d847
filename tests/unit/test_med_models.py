"""The medical model table: shapes for every model and flavour, the Soft Attention head's arithmetic
(REFERENCE.md §1.3), PatchConvNet S60's size (§3), class-attention maps, weights from local files only."""

import math
import re

import pytest
import torch
from torchvision.models import DenseNet, ResNet

from medtrain.models import FLAVOURS, MODELS, build_model, model_options, to_three_channels

NUM_CLASSES = 3
# name: its attention maps at 64 px in the cpu flavour, (name: shape after the batch)
CPU_ATTENTION = {
    "densenet201": {},
    "densenet201_soft_attention": {"soft_attention": (16, 2, 2)},
    "patchconvnet_s60": {"class_attention": (8, 8)},  # the IDC seed's 64 patches
    "resnet50": {},
}
# torchvision's published sizes (1000 classes) and PatchConvNet S60's 25.2 M (deit README_patchconvnet.md)
DENSENET201_PARAMETERS = 20_013_928
RESNET50_PARAMETERS = 25_557_032


def count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@pytest.fixture(scope="module")
def cpu_models():
    torch.manual_seed(0)
    return {name: build_model(name, NUM_CLASSES, "cpu") for name in MODELS}


def test_every_model_of_the_table_is_covered():
    assert set(CPU_ATTENTION) == set(MODELS) and FLAVOURS == ("full", "cpu")


@pytest.mark.parametrize("name", MODELS)
def test_cpu_flavour_shapes_and_heatmap(cpu_models, name):
    model = cpu_models[name].eval()
    with torch.no_grad():
        logits, attention = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, NUM_CLASSES)
    assert {key: tuple(value.shape) for key, value in attention.items()} == {
        key: (2, *shape) for key, shape in CPU_ATTENTION[name].items()
    }
    heatmap = model.attention_heatmap(attention)
    if attention:
        (shape,) = CPU_ATTENTION[name].values()
        assert heatmap.shape == (2, *shape[-2:])
    else:
        assert heatmap is None


@pytest.mark.parametrize("name", MODELS)
def test_cpu_flavour_trains_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, "cpu").train()
    logits, _ = model(torch.randn(2, 3, 64, 64))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_soft_attention_head_matches_the_reference_arithmetic():
    """REFERENCE.md §1.3: DenseNet201 cut at conv5_block29_1_relu (7x7x128 at 224 px), Soft Attention with
    16 maps, max-pool 2 'same' (7 -> 4) of raw and attended features, concatenated -> 4x4x256 = 4096 -> Dense."""
    model = build_model("densenet201_soft_attention", NUM_CLASSES).eval()
    channels, maps, side, growth = 128, 16, 7, 32
    pooled = math.ceil(side / 2)
    assert count(model.attention) == channels * 3 * 3 * maps + maps + 1  # conv over all channels, bias, γ
    assert model.classifier.in_features == 2 * channels * pooled * pooled == 4096
    assert count(model.classifier) == 4096 * NUM_CLASSES + NUM_CLASSES

    def dense_layer(inputs: int) -> int:  # norm1, 1x1 conv to 128, norm2, 3x3 conv to 32
        return 2 * inputs + inputs * channels + 2 * channels + channels * 9 * growth

    block4_inputs = 896  # (64 + 6·32)/2 = 128 -> (128 + 12·32)/2 = 256 -> (256 + 48·32)/2 = 896
    conv2_of_layer29 = channels * 9 * growth
    layers_30_to_32 = sum(dense_layer(block4_inputs + (layer - 1) * growth) for layer in (30, 31, 32))
    norm5 = 2 * 1920
    dropped = conv2_of_layer29 + layers_30_to_32 + norm5
    features_of_densenet201 = DENSENET201_PARAMETERS - (1920 * 1000 + 1000)
    assert count(model.features) == features_of_densenet201 - dropped
    with torch.no_grad():  # the one full-size forward
        assert model.forward_features(torch.zeros(1, 3, 224, 224)).shape == (1, channels, side, side)


def test_soft_attention_reads_the_bottleneck_of_the_third_last_dense_layer(tmp_path):
    """REFERENCE.md §1.5's recipe on the whole torchvision network, whose weights the cut model loads."""
    torch.manual_seed(0)
    network = DenseNet(growth_rate=32, block_config=(2, 2, 2, 6), num_init_features=64).eval()
    torch.save(network.state_dict(), tmp_path / "densenet.pth")
    model = build_model("densenet201_soft_attention", NUM_CLASSES, "cpu", str(tmp_path / "densenet.pth")).eval()
    assert list(model.features.denseblock4) == ["denselayer1", "denselayer2", "denselayer3"]
    assert not hasattr(model.features.denseblock4.denselayer3, "conv2") and not hasattr(model.features, "norm5")

    images = torch.randn(2, 3, 64, 64)
    f = network.features
    with torch.no_grad():
        x = f.pool0(f.relu0(f.norm0(f.conv0(images))))
        for block, transition in [
            (f.denseblock1, f.transition1),
            (f.denseblock2, f.transition2),
            (f.denseblock3, f.transition3),
        ]:
            x = transition(block(x))
        inputs = [x]
        for index in (1, 2):
            inputs.append(f.denseblock4[f"denselayer{index}"](inputs))
        cut = f.denseblock4["denselayer3"]
        expected = cut.relu2(cut.norm2(cut.conv1(cut.relu1(cut.norm1(torch.cat(inputs, 1))))))
        torch.testing.assert_close(model.forward_features(images), expected)


def patchconvnet_parameters(dim: int, depth: int, num_classes: int) -> int:
    """REFERENCE.md §3, counted by hand."""
    stem = 9 * (3 * dim // 8 + dim // 8 * dim // 4 + dim // 4 * dim // 2 + dim // 2 * dim)  # no biases
    linear = dim * dim + dim
    squeeze_excite = 2 * dim * (dim // 4) + dim // 4 + dim
    block = 2 * dim + dim + linear + (9 * dim + dim) + squeeze_excite + linear  # LN, γ, 1x1, depthwise, SE, 1x1
    class_block = 2 * dim + 4 * linear + 2 * dim + (3 * dim * dim + 3 * dim) + (3 * dim * dim + dim) + 2 * dim
    return stem + depth * block + class_block + dim + 2 * dim + dim * num_classes + num_classes  # cls, norm, head


def test_patchconvnet_s60_size():
    s60 = build_model("patchconvnet_s60", 1000)
    assert count(s60) == patchconvnet_parameters(384, 60, 1000) == 25_231_096
    assert round(count(s60) / 1e6, 1) == 25.2
    assert count(build_model("patchconvnet_s60", NUM_CLASSES, "cpu")) == patchconvnet_parameters(64, 4, NUM_CLASSES)


@pytest.mark.parametrize(("side", "patch_size", "grid"), [(64, 0, 8), (128, 16, 8), (224, 16, 14), (32, 4, 8)])
def test_class_attention_is_the_cls_query_softmax_over_the_patch_grid(side, patch_size, grid):
    torch.manual_seed(0)
    model = build_model("patchconvnet_s60", NUM_CLASSES, "cpu", patch_size=patch_size).eval()
    assert count(model) == patchconvnet_parameters(64, 4, NUM_CLASSES)  # every patch size, the same weights
    block = model.blocks_token_only[0]
    captured = {}
    block.register_forward_pre_hook(lambda module, args: captured.update(patches=args[0], cls=args[1]))
    with torch.no_grad():
        _, attention = model(torch.randn(2, 3, side, side))
        tokens = block.norm1(torch.cat([captured["cls"], captured["patches"]], 1))
        logits = torch.einsum("bc,bnc->bn", block.attn.q(tokens[:, 0]), block.attn.k(tokens[:, 1:])) / 64**0.5
    maps = attention["class_attention"]
    assert maps.shape == (2, grid, grid)
    torch.testing.assert_close(maps.sum((1, 2)), torch.ones(2))
    torch.testing.assert_close(maps.flatten(1), logits.softmax(-1))


def test_patch_size_must_be_a_power_of_two_the_stem_can_reach():
    with pytest.raises(ValueError, match="patch_size must be a power of 2 from 1 to 16, got 12"):
        build_model("patchconvnet_s60", NUM_CLASSES, "cpu", patch_size=12)


@pytest.mark.parametrize(
    ("name", "expected"), [("densenet201", DENSENET201_PARAMETERS), ("resnet50", RESNET50_PARAMETERS)]
)
def test_full_size_torchvision_networks(name, expected):
    assert count(build_model(name, 1000)) == expected


def test_greyscale_images_are_repeated_to_three_channels(cpu_models):
    grey = torch.rand(2, 1, 64, 64)
    images = to_three_channels(grey)
    assert images.shape == (2, 3, 64, 64) and all(torch.equal(images[:, c], grey[:, 0]) for c in range(3))
    assert to_three_channels(images) is images
    with torch.no_grad():
        assert cpu_models["resnet50"].eval()(images)[0].shape == (2, NUM_CLASSES)
    with pytest.raises(ValueError, match=r"1 or 3 channels, got shape \(2, 2, 64, 64\)"):
        to_three_channels(torch.rand(2, 2, 64, 64))


def test_unknown_names_flavours_and_options_are_errors():
    with pytest.raises(ValueError, match="unknown model 'vit'; the table has: densenet201, "):
        build_model("vit", NUM_CLASSES)
    with pytest.raises(ValueError, match="unknown flavour 'tiny' for resnet50"):
        build_model("resnet50", NUM_CLASSES, "tiny")
    with pytest.raises(ValueError, match=r"unknown option\(s\) patch_size for model resnet50; allowed: none"):
        build_model("resnet50", NUM_CLASSES, "cpu", patch_size=8)
    assert model_options("densenet201_soft_attention") == ("image_size", "keras_literal", "gamma_init", "dropout")


def test_a_missing_weights_file_names_its_path(tmp_path):
    path = tmp_path / "nowhere" / "densenet201.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))) as error:
        build_model("densenet201", NUM_CLASSES, "cpu", str(path))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", MODELS)
def test_saved_weights_load_back_and_a_new_class_count_gets_a_new_head(tmp_path, cpu_models, name):
    source = cpu_models[name].state_dict()
    torch.save(source, tmp_path / "model.pth")
    same = build_model(name, NUM_CLASSES, "cpu", str(tmp_path / "model.pth")).state_dict()
    assert same.keys() == source.keys() and all(torch.equal(same[key], source[key]) for key in source)
    other = build_model(name, 5, "cpu", str(tmp_path / "model.pth"))
    for key, value in other.state_dict().items():
        if key.startswith(f"{other.head_name}."):
            assert value.shape[0] == 5
        else:
            assert torch.equal(value, source[key]), key


def test_torchvision_release_files_with_old_names_and_no_batch_norm_counters_load(tmp_path):
    """torchvision's DenseNet files use ``norm.1``-style names and, from before PyTorch 0.4.1, no
    ``num_batches_tracked`` buffers."""
    torch.manual_seed(0)
    state = DenseNet(growth_rate=32, block_config=(2, 2, 2, 6), num_init_features=64).state_dict()
    legacy = {
        re.sub(r"(denselayer\d+\.(norm|relu|conv))([12])\.", r"\1.\3.", key): value
        for key, value in state.items()
        if not key.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    torch.save(legacy, tmp_path / "densenet.pth")
    loaded = build_model("densenet201", 1000, "cpu", str(tmp_path / "densenet.pth")).state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


def test_a_file_for_another_network_is_an_error_naming_it(tmp_path):
    from torchvision.models.resnet import Bottleneck

    torch.save(ResNet(Bottleneck, [1, 1, 1, 1]).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(
        ValueError, match=re.escape(f"{tmp_path / 'resnet.pth'} does not fit DenseNetSoftAttention: missing")
    ):
        build_model("densenet201_soft_attention", NUM_CLASSES, "cpu", str(tmp_path / "resnet.pth"))
