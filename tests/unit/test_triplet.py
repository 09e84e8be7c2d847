"""Online triplet mining against a brute-force enumeration of every triplet, in float64."""

import math

import pytest
import torch

from facetrain.triplet import MODES, triplet_loss


def distance(x, y, squared):
    d = ((x - y) ** 2).sum()
    return d if squared else d.clamp_min(1e-12).sqrt()


def brute_force(emb, labels, margin, mining, squared):
    """The definitions of facetrain/triplet.py, one triplet at a time."""
    n = len(emb)
    d = [[distance(emb[i], emb[j], squared) for j in range(n)] for i in range(n)]
    terms = []
    for a in range(n):
        positives = [p for p in range(n) if p != a and labels[p] == labels[a]]
        negatives = [q for q in range(n) if labels[q] != labels[a]]
        if not positives or not negatives:
            continue
        if mining == "batch_all":
            terms += [torch.relu(d[a][p] - d[a][q] + margin) for p in positives for q in negatives]
        elif mining == "batch_hard":
            p = max(positives, key=lambda j: d[a][j].item())
            q = min(negatives, key=lambda j: d[a][j].item())
            terms.append(torch.relu(d[a][p] - d[a][q] + margin))
        else:
            for p in positives:
                farther = [q for q in negatives if d[a][q] > d[a][p]]
                q = (min(farther, key=lambda j: d[a][j].item()) if farther
                     else max(negatives, key=lambda j: d[a][j].item()))
                terms.append(torch.relu(d[a][p] - d[a][q] + margin))
    if mining == "batch_all":
        terms = [t for t in terms if t > 0]
    return torch.stack(terms).mean() if terms else emb.sum() * 0


def batch(seed, identities=(0, 0, 0, 1, 1, 2, 2, 2, 3, 4), dim=8, ties=True):
    generator = torch.Generator().manual_seed(seed)
    emb = torch.randn(len(identities), dim, generator=generator, dtype=torch.float64)
    emb = torch.nn.functional.normalize(emb, dim=1)
    if ties:
        emb[2] = emb[1]  # two identical images of identity 0: tied distances everywhere
        emb[7] = emb[5]
    return emb, torch.tensor(identities)


def ours(emb, labels, margin, mining, squared):
    total, count, stats = triplet_loss(emb, labels, emb, labels, torch.arange(len(emb)), margin, mining, squared)
    return total / count if count else total * 0, stats


@pytest.mark.parametrize("mining", MODES)
@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_loss_and_gradients_equal_brute_force(mining, squared, seed):
    margin = 0.2 if squared else 0.3
    emb, labels = batch(seed)
    emb_ours = emb.clone().requires_grad_()
    emb_ref = emb.clone().requires_grad_()
    loss, stats = ours(emb_ours, labels, margin, mining, squared)
    reference = brute_force(emb_ref, labels, margin, mining, squared)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-10, abs=1e-12)
    loss.backward()
    reference.backward()
    torch.testing.assert_close(emb_ours.grad, emb_ref.grad, rtol=1e-8, atol=1e-10)
    assert 0 <= stats.active_fraction <= 1 and stats.triplets > 0


@pytest.mark.parametrize("mining", MODES)
def test_degenerate_batches_give_zero_not_errors(mining):
    emb, _ = batch(0, ties=False)
    one_identity = torch.zeros(len(emb), dtype=torch.long)  # no negatives anywhere
    loss, stats = ours(emb.clone().requires_grad_(), one_identity, 0.2, mining, True)
    assert loss.item() == 0 and stats.triplets == 0
    singletons = torch.arange(len(emb))  # no positives anywhere
    loss, stats = ours(emb.clone().requires_grad_(), singletons, 0.2, mining, True)
    assert loss.item() == 0 and stats.triplets == 0


def test_anchor_positions_exclude_only_the_anchor_itself():
    """Cross-rank form: 3 local anchors against 6 references; each anchor is reference row 3 + i."""
    emb, labels = batch(1, identities=(0, 1, 2, 0, 1, 2), ties=False)
    total, count, _ = triplet_loss(emb[3:], labels[3:], emb, labels, torch.arange(3, 6), 0.2, "batch_hard", True)
    full_total, full_count, _ = triplet_loss(emb, labels, emb, labels, torch.arange(6), 0.2, "batch_hard", True)
    assert count == 3 and full_count == 6
    per_anchor = brute_force(emb, labels, 0.2, "batch_hard", True) * 6
    assert math.isclose(full_total.item(), per_anchor.item(), rel_tol=1e-10)
    assert total.item() <= full_total.item() + 1e-12


def test_semi_hard_prefers_the_nearest_negative_beyond_the_positive():
    emb = torch.tensor([[0.0], [1.0], [1.5], [3.0], [0.5]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2, 3])
    total, count, _ = triplet_loss(emb[:1], labels[:1], emb, labels, torch.tensor([0]), 1.0, "semi_hard", False)
    # d(a,p) = 1; negatives at 1.5, 3.0 and 0.5: the nearest one farther than p is 1.5
    assert count == 1 and total.item() == pytest.approx(1.0 - 1.5 + 1.0)
    total, _, _ = triplet_loss(emb[:1], labels[:1], emb[[0, 1, 4]], labels[[0, 1, 4]], torch.tensor([0]), 1.0,
                               "semi_hard", False)
    # only negative (0.5) is closer than the positive: fallback to the farthest negative
    assert total.item() == pytest.approx(1.0 - 0.5 + 1.0)
