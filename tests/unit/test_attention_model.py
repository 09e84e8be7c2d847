"""The attention FaceNet: shapes, normalisations, freezing (the layer itself: test_soft_attention.py; the
backbones and their weights: test_backbones.py)."""

import pytest
import torch

from facetrain.model import AttentionFaceNet
from facetrain.model_config import FaceModelConfig


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
    trainable = {".".join(name.split(".")[:3]) if name.startswith("backbone") else name.split(".")[0]
                 for name, p in facenet.named_parameters() if p.requires_grad}
    assert trainable == {"backbone.body.block8", "attention", "embed"}
    facenet.train()
    assert not facenet.backbone.body.conv2d_1a.bn.training  # frozen batch-norm statistics stay fixed
    assert facenet.backbone.body.block8.training


def test_timm_backbone_without_attention_or_freezing():
    model = AttentionFaceNet(FaceModelConfig(backbone="resnet50", attention=False, image_size=128, freeze="none"))
    embedding, maps = model(torch.randn(2, 3, 128, 128))
    assert embedding.shape == (2, 128) and maps is None
    assert model.embed.in_features == 2048 * 4 * 4
    assert all(p.requires_grad for p in model.parameters())


def test_weights_follow_the_config(tmp_path):
    missing = tmp_path / "20180402-114759-vggface2.pt"
    with pytest.raises(FileNotFoundError, match=r"'vggface2' asked for, but .*vggface2\.pt does not exist"):
        AttentionFaceNet(FaceModelConfig(pretrained="vggface2", pretrained_path=str(missing)))
