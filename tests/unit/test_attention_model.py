"""The attention FaceNet: shapes, normalisations, freezing, weights (the layer itself: test_soft_attention.py)."""

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
