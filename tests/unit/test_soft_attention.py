"""Soft Attention and the attention merge against direct float64 computations of their definitions."""

import numpy as np
import pytest
import torch

from facetrain.attention import AttentionMerge, SoftAttention


def softmax_over_positions(logits_BKHW):
    flat = logits_BKHW.reshape(*logits_BKHW.shape[:2], -1)
    e = np.exp(flat - flat.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).reshape(logits_BKHW.shape)


def paper_form(x, weight, bias, gamma):
    """f = γ · x · Σ_k softmax_HW(ReLU(W_k * x + b_k)), with W_k a 3x3 cross-correlation over all channels,
    zero-padded to keep H x W."""
    B, _, H, W = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    logits = np.broadcast_to(bias[None, :, None, None], (B, len(bias), H, W)).copy()
    for dy in range(3):
        for dx in range(3):
            logits += np.einsum("kc,bchw->bkhw", weight[:, :, dy, dx], padded[:, :, dy:dy + H, dx:dx + W])
    maps = softmax_over_positions(np.maximum(logits, 0))
    return gamma * maps.sum(1, keepdims=True) * x, maps


def keras_literal_form(x, kernel, bias):
    """REFERENCE.md §1.2: Keras conv3d of x (B, H, W, C, 1) seen as NDHWC, kernel (C, 3, 3, 1, m), strides
    (1, 1, C), 'same' padding (rows ((C-1)//2, C-1-(C-1)//2), columns 1 and 1, none on the channel axis),
    + bias, ReLU, softmax over H·W per map, maps summed times x; no γ.  Written in Keras' NHWC indices."""
    x_nhwc = x.transpose(0, 2, 3, 1)
    B, H, W, C = x_nhwc.shape
    top = (C - 1) // 2
    padded = np.pad(x_nhwc, ((0, 0), (top, C - 1 - top), (1, 1), (0, 0)))
    out = np.broadcast_to(bias, (B, H, W, len(bias))).copy()
    for a in range(C):  # kernel depth runs along the rows
        for s in range(3):
            out += np.einsum("bhwc,ck->bhwk", padded[:, a:a + H, s:s + W, :3], kernel[a, s, :, 0, :])
    maps = softmax_over_positions(np.maximum(out, 0).transpose(0, 3, 1, 2))
    return maps.sum(1, keepdims=True) * x, maps


def test_paper_form_equals_the_direct_computation_from_its_weights():
    attention = SoftAttention(6, maps=4).double()
    with torch.no_grad():
        attention.gamma.fill_(0.37)
    features = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    attended, maps = attention(features)
    conv = attention.conv
    expected, expected_maps = paper_form(features.numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy(),
                                         0.37)
    np.testing.assert_allclose(maps.detach().numpy(), expected_maps, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(attended.detach().numpy(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("channels", [3, 4])  # 4: rows padded unevenly, (1, 2)
def test_keras_literal_form_equals_the_keras_layer_computed_in_its_own_layout(channels):
    attention = SoftAttention(channels, maps=3, keras_literal=True).double()
    with torch.no_grad():
        attention.bias.uniform_(-0.5, 0.5)
    features = torch.randn(2, channels, 4, 6, dtype=torch.float64)
    attended, maps = attention(features)
    kernel = attention.weight.detach().permute(2, 3, 1, 0).unsqueeze(3).numpy()  # weight[k,c,i,j] = kernel[i,j,c,0,k]
    expected, expected_maps = keras_literal_form(features.numpy(), kernel, attention.bias.detach().numpy())
    np.testing.assert_allclose(maps.detach().numpy(), expected_maps, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(attended.detach().numpy(), expected, rtol=1e-12, atol=1e-15)


def test_defaults_16_maps_gamma_0_01_and_keras_he_uniform_init():
    attention = SoftAttention(32)
    assert attention.maps == 16 and not attention.keras_literal
    assert attention.gamma.shape == (1,) and attention.gamma.item() == pytest.approx(0.01)
    assert attention.gamma.requires_grad
    assert SoftAttention(32, gamma_init=None).gamma is None
    literal = SoftAttention(192, keras_literal=True)
    bound = (6 / (9 * 192)) ** 0.5  # he_uniform: U(±sqrt(6 / fan_in)), fan_in = 3·3·C
    assert 0.99 * bound < literal.weight.abs().max().item() <= bound * (1 + 1e-6)  # float32 rounding
    assert not literal.bias.any()
    with pytest.raises(ValueError, match="reads channels 0-2; got 2 channels"):
        SoftAttention(2, keras_literal=True)(torch.randn(1, 2, 4, 4))


def test_maps_are_spatial_softmaxes_and_sum_to_k():
    attention = SoftAttention(32, maps=16)
    features = torch.randn(2, 32, 7, 7)
    attended, maps = attention(features)
    assert maps.shape == (2, 16, 7, 7) and attended.shape == features.shape
    torch.testing.assert_close(maps.sum((2, 3)), torch.ones(2, 16))
    torch.testing.assert_close(attended, 0.01 * maps.sum(1, keepdim=True) * features)


def test_paper_form_reads_every_channel_and_literal_keras_form_only_the_first_three():
    features = torch.randn(1, 192, 8, 8)
    shifted = features.clone()
    shifted[:, 100] += 5.0
    paper = SoftAttention(192)
    assert not torch.allclose(paper.attention_maps(features), paper.attention_maps(shifted))
    literal = SoftAttention(192, keras_literal=True)
    torch.testing.assert_close(literal.attention_maps(features), literal.attention_maps(shifted))
    shifted[:, 1] += 5.0
    assert not torch.allclose(literal.attention_maps(features), literal.attention_maps(shifted))
    assert sum(p.numel() for p in literal.parameters()) == 27_664  # REFERENCE.md §1.2: C·3·3·m + m, no γ
    assert literal.gamma is None


def max_pool_same(x):
    """Keras MaxPooling2D(2, padding='same'): 2x2 windows from the top left, the last ones cut short."""
    B, C, H, W = x.shape
    out = np.empty((B, C, (H + 1) // 2, (W + 1) // 2))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max((2, 3))
    return out


def test_merge_concatenates_pooled_raw_then_pooled_attended_or_adds():
    raw, attended = torch.randn(2, 4, 7, 6), torch.randn(2, 4, 7, 6)
    concat = AttentionMerge(4)
    assert concat.out_channels == 8
    for height, width in [(7, 6), (6, 7), (8, 9)]:
        pooled = concat(torch.zeros(1, 4, height, width), torch.zeros(1, 4, height, width))
        assert concat.output_size(height, width) == tuple(pooled.shape[2:])
    expected = np.concatenate([max_pool_same(raw.numpy()), max_pool_same(attended.numpy())], 1)
    np.testing.assert_array_equal(concat(raw, attended).numpy(), expected)
    add = AttentionMerge(4, "add")
    assert (add.out_channels, add.output_size(7, 6)) == (4, (7, 6))
    torch.testing.assert_close(add(raw, attended), raw + attended)
    with pytest.raises(ValueError, match="merge must be 'concat' or 'add', got 'sum'"):
        AttentionMerge(4, "sum")
