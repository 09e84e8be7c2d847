"""ArcFace and CosFace logits against their formulas, in float64."""

import math

import pytest
import torch
import torch.nn.functional as F

from facetrain.margin_heads import MarginHead


def setup(kind, seed=0):
    torch.manual_seed(seed)
    head = MarginHead(5, 8, kind).double()
    embeddings = F.normalize(torch.randn(6, 8, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    cosine = embeddings @ F.normalize(head.centres, dim=1).T
    return head, embeddings, labels, cosine


def test_cosface_subtracts_the_margin_from_the_target_cosine():
    head, embeddings, labels, cosine = setup("cosface")
    logits = head.logits(embeddings, labels)
    expected = 64 * (cosine - 0.35 * F.one_hot(labels, 5))
    torch.testing.assert_close(logits, expected)


def test_arcface_adds_the_margin_to_the_target_angle():
    head, embeddings, labels, cosine = setup("arcface")
    logits = head.logits(embeddings, labels)
    for row, label in enumerate(labels.tolist()):
        theta = math.acos(cosine[row, label].item())
        fallback = cosine[row, label].item() - math.sin(math.pi - 0.5) * 0.5
        expected = math.cos(theta + 0.5) if theta + 0.5 < math.pi else fallback
        assert logits[row, label].item() == pytest.approx(64 * expected, rel=1e-9)
        others = [c for c in range(5) if c != label]
        torch.testing.assert_close(logits[row, others], 64 * cosine[row, others])


def test_arcface_fallback_past_pi_stays_monotone():
    head = MarginHead(2, 2, "arcface").double()
    with torch.no_grad():
        head.centres.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    angles = torch.linspace(2.5, math.pi, 20, dtype=torch.float64)
    embeddings = torch.stack([angles.cos(), angles.sin()], 1)
    target = head.logits(embeddings, torch.zeros(20, dtype=torch.long))[:, 0]
    assert torch.all(target[1:] <= target[:-1] + 1e-12)  # decreasing as the angle grows


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_training_the_centres_lowers_the_loss(kind):
    head, embeddings, labels, _ = setup(kind, seed=3)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05)
    first = head(embeddings, labels).item()
    for _ in range(30):
        optimizer.zero_grad()
        head(embeddings, labels).backward()
        optimizer.step()
    assert head(embeddings, labels).item() < first
