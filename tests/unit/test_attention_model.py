"""Soft Attention and the attention FaceNet: shapes, normalisations, freezing, weights."""

import pytest
import torch

from facetrain.attention import AttentionMerge, SoftAttention
from facetrain.model import AttentionFaceNet, FaceModelConfig


def test_maps_are_spatial_softmaxes_and_sum_to_k():
    attention = SoftAttention(32, maps=16)
    features = torch.randn(2, 32, 7, 7)
    attended, maps = attention(features)
    assert maps.shape == (2, 16, 7, 7) and attended.shape == features.shape
    torch.testing.assert_close(maps.sum((2, 3)), torch.ones(2, 16))
    torch.testing.assert_close(attended, 0.01 * maps.sum(1, keepdim=True) * features)
    assert attention.gamma.requires_grad and attention.gamma.item() == pytest.approx(0.01)


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


def test_merge_matches_keras_same_pooling():
    merge = AttentionMerge(4)
    out = merge(torch.randn(1, 4, 7, 7), torch.randn(1, 4, 7, 7))
    assert out.shape == (1, 8, 4, 4) and merge.output_size(7, 7) == (4, 4)
    assert AttentionMerge(4, "add")(torch.ones(1, 4, 3, 3), torch.ones(1, 4, 3, 3)).shape == (1, 4, 3, 3)


@pytest.fixture(scope="module")
def facenet():
    return AttentionFaceNet(FaceModelConfig())


def test_attention_facenet_embeddings_and_maps(facenet):
    facenet.eval()
    with torch.no_grad():
        embedding, maps = facenet(torch.randn(2, 3, 160, 160))
    assert embedding.shape == (2, 128)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))
    assert maps.shape == (2, 16, 3, 3)


def test_only_the_last_block_attention_and_head_train(facenet):
    trainable = {".".join(name.split(".")[:2]) if name.startswith("backbone") else name.split(".")[0]
                 for name, p in facenet.named_parameters() if p.requires_grad}
    assert trainable == {"backbone.block8", "attention", "embed"}
    facenet.train()
    assert not facenet.backbone.conv2d_1a.training and facenet.backbone.block8.training  # frozen BN stats fixed


def test_resnet50_variant_without_attention():
    model = AttentionFaceNet(FaceModelConfig(backbone="resnet50", attention=False, image_size=128, freeze="none"))
    embedding, maps = model(torch.randn(2, 3, 128, 128))
    assert embedding.shape == (2, 128) and maps is None
    assert all(p.requires_grad for p in model.parameters())


def test_pretrained_weights_come_from_a_local_file(tmp_path):
    from facenet_pytorch import InceptionResnetV1

    missing = tmp_path / "20180402-114759-vggface2.pt"
    with pytest.raises(FileNotFoundError, match=r"'vggface2' asked for, but .*vggface2\.pt does not exist"):
        AttentionFaceNet(FaceModelConfig(pretrained="vggface2", pretrained_path=str(missing)))
    source = InceptionResnetV1(pretrained=None, classify=True, num_classes=8631)  # as the released file
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    model = AttentionFaceNet(FaceModelConfig(pretrained="vggface2", pretrained_path=str(path)))
    torch.testing.assert_close(model.backbone.block8.conv2d.weight, source.block8.conv2d.weight)
