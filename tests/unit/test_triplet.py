"""Online triplet mining against a brute-force enumeration of every triplet, in float64."""

import math

import pytest
import torch

from facetrain import triplet
from facetrain.triplet import MODES, MiningStats, distributed_triplet_loss, triplet_loss
from launcher.runtime.dist import DistInfo


def distance(x, y, squared):
    d = ((x - y) ** 2).sum()
    return d if squared else d.clamp_min(1e-12).sqrt()


def distances(emb, squared):
    return [[distance(emb[i], emb[j], squared) for j in range(len(emb))] for i in range(len(emb))]


def selected(emb, labels, mining, squared):
    """The definitions of facetrain/triplet.py, one triplet at a time: the (d(a,p), d(a,n)) the mode selects."""
    n = len(emb)
    d = distances(emb, squared)
    pairs = []
    for a in range(n):
        positives = [p for p in range(n) if p != a and labels[p] == labels[a]]
        negatives = [q for q in range(n) if labels[q] != labels[a]]
        if not positives or not negatives:
            continue
        if mining == "batch_all":
            pairs += [(d[a][p], d[a][q]) for p in positives for q in negatives]
        elif mining == "batch_hard":
            p = max(positives, key=lambda j: d[a][j].item())
            q = min(negatives, key=lambda j: d[a][j].item())
            pairs.append((d[a][p], d[a][q]))
        else:
            for p in positives:
                farther = [q for q in negatives if d[a][q] > d[a][p]]
                q = (min(farther, key=lambda j: d[a][j].item()) if farther
                     else max(negatives, key=lambda j: d[a][j].item()))
                pairs.append((d[a][p], d[a][q]))
    return pairs


def brute_force(emb, labels, margin, mining, squared):
    terms = [torch.relu(d_ap - d_an + margin) for d_ap, d_an in selected(emb, labels, mining, squared)]
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
    assert loss.item() == 0 and stats == MiningStats(0.0, 0.0, 0.0, 0.0, 0)
    singletons = torch.arange(len(emb))  # no positives anywhere
    loss, stats = ours(emb.clone().requires_grad_(), singletons, 0.2, mining, True)
    assert loss.item() == 0 and stats.triplets == 0
    assert (stats.active_fraction, stats.mean_positive_distance, stats.mean_negative_distance) == (0.0, 0.0, 0.0)


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


def test_defaults_are_facenets_squared_semi_hard_with_margin_0_2():
    emb, labels = batch(5)
    total, count, _ = triplet_loss(emb, labels, emb, labels, torch.arange(len(emb)))
    assert (total / count).item() == pytest.approx(brute_force(emb, labels, 0.2, "semi_hard", True).item(), rel=1e-10)
    with pytest.raises(ValueError, match="mining must be one of"):
        triplet_loss(emb, labels, emb, labels, torch.arange(len(emb)), mining="hardest")


# 1-D points at exactly representable distances, with ties between positives and negatives
TIED = torch.tensor([[0.0], [1.0], [-1.0], [2.0], [4.0]], dtype=torch.float64), torch.tensor([0, 0, 1, 1, 2])


@pytest.mark.parametrize("squared", [True, False])
def test_a_negative_exactly_as_far_as_the_positive_is_not_semi_hard(squared):
    """From anchor 0, positive 1 and negative -1 tie at distance 1: semi-hard mining must skip -1 (not
    strictly farther) and take the negative at 2."""
    emb, labels = TIED
    total, count, _ = triplet_loss(emb[:1], labels[:1], emb, labels, torch.tensor([0]), 0.5, "semi_hard", squared)
    assert count == 1 and total.item() == 0.0  # max(1 - d(0, 2) + 0.5, 0): 1 - 2 + 0.5 squared or not


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("mining", MODES)
def test_tied_distances_equal_brute_force(mining, squared):
    emb, labels = TIED
    loss, _ = ours(emb, labels, 0.5, mining, squared)
    assert loss.item() == pytest.approx(brute_force(emb, labels, 0.5, mining, squared).item(), rel=1e-12)


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("mining", MODES)
def test_mining_statistics_equal_brute_force(mining, squared):
    """The dashboard's figures: share of selected triplets with a non-zero loss, mean d(a,p) and d(a,n) of
    the selected triplets, the smallest anchor-negative distance of the batch, how many were selected."""
    margin = 0.1  # some selected triplets active, some not, in every mode
    emb, labels = batch(7, ties=False)
    _, stats = ours(emb, labels, margin, mining, squared)
    pairs = selected(emb, labels, mining, squared)
    d_ap = torch.stack([p for p, _ in pairs])
    d_an = torch.stack([n for _, n in pairs])
    d = distances(emb, squared)
    hardest = min(d[a][q] for a in range(len(emb)) for q in range(len(emb)) if labels[a] != labels[q])
    assert stats.triplets == len(pairs)
    assert stats.active_fraction == pytest.approx((d_ap - d_an + margin > 0).double().mean().item(), rel=1e-6)
    assert 0 < stats.active_fraction < 1 and stats.active_fraction != 0.5
    assert stats.mean_positive_distance == pytest.approx(d_ap.mean().item(), rel=1e-10)
    assert stats.mean_negative_distance == pytest.approx(d_an.mean().item(), rel=1e-10)
    assert stats.hardest_negative_distance == pytest.approx(hardest.item(), rel=1e-10)


def across_ranks(monkeypatch, emb, labels, world, **options):
    """distributed_triplet_loss on ``world`` equal slices of the batch, the ranks run one after the other
    with stand-in collectives: an all-gather splices the calling rank's rows into the whole batch; an
    all-reduce returns the sum of what every rank passed it in a first round, whose results are dropped."""
    rows = len(emb) // world
    passed = {}

    def all_reduce_sum(t, dist):
        if len(passed) < world:  # first round: remember, answer with the rank's own value
            passed[dist.rank] = t
            return t
        return sum(passed.values())

    def splice(whole):
        return lambda t, dist: torch.cat([whole[:dist.rank * rows], t, whole[(dist.rank + 1) * rows:]])

    monkeypatch.setattr(triplet, "all_gather_with_grad", splice(emb))
    monkeypatch.setattr(triplet, "all_gather_tensor", splice(labels))
    monkeypatch.setattr(triplet, "all_reduce_sum", all_reduce_sum)
    ranks = [DistInfo(rank=r, world_size=world, local_rank=r, device=torch.device("cpu")) for r in range(world)]
    for _ in range(2):
        results = [distributed_triplet_loss(emb[d.rank * rows:(d.rank + 1) * rows],
                                            labels[d.rank * rows:(d.rank + 1) * rows], d, **options) for d in ranks]
    return [loss for loss, _ in results], [stats for _, stats in results]


@pytest.mark.parametrize("options", [{}, {"margin": 0.3, "mining": "batch_all", "squared": False},
                                     {"margin": 0.1, "mining": "batch_hard", "squared": True}])
def test_cross_rank_losses_average_to_the_single_process_loss(monkeypatch, options):
    """REFERENCE.md §7.4: with the engine averaging gradients over ranks, training on W ranks equals one
    process over the concatenated batch: the mean of the ranks' losses (and so its gradient) is the same."""
    emb, labels = batch(3, identities=(0, 1, 2, 0, 3, 1, 2, 4), ties=False)
    defaults = {"margin": 0.2, "mining": "semi_hard", "squared": True}  # FaceNet's, as documented
    margin, mining, squared = ({**defaults, **options}[k] for k in ("margin", "mining", "squared"))
    single = emb.clone().requires_grad_()
    expected = brute_force(single, labels, margin, mining, squared)
    expected.backward()
    spread = emb.clone().requires_grad_()
    losses, stats = across_ranks(monkeypatch, spread, labels, 2, **options)
    mean = sum(losses) / 2
    assert mean.item() == pytest.approx(expected.item(), rel=1e-10)
    mean.backward()
    torch.testing.assert_close(spread.grad, single.grad, rtol=1e-8, atol=1e-12)
    assert sum(s.triplets for s in stats) == len(selected(emb, labels, mining, squared))


def test_cross_rank_loss_is_zero_when_no_rank_selects_anything(monkeypatch):
    emb, _ = batch(3, ties=False)
    spread = emb[:8].clone().requires_grad_()
    losses, _ = across_ranks(monkeypatch, spread, torch.zeros(8, dtype=torch.long), 2)  # no negatives anywhere
    assert [loss.item() for loss in losses] == [0.0, 0.0]
    sum(losses).backward()
    assert not spread.grad.any()


def test_a_single_selected_triplet_is_the_loss_itself_in_the_compute_dtype():
    """One rank, batch_all, exactly one active triplet (a=0, p=1, n=2 on a line): the mean over
    one term is that term, and the loss keeps the embeddings' dtype."""
    one_rank = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    points = torch.tensor([[0.0], [1.0], [-0.5]], dtype=torch.float32)
    loss, stats = distributed_triplet_loss(points, torch.tensor([0, 0, 1]), one_rank, margin=0.2, mining="batch_all")
    assert loss.item() == pytest.approx(1.0 - 0.25 + 0.2)  # d(0,1) - d(0,2) + α, squared distances
    assert stats.triplets == 2 and float(stats.active_fraction) == 0.5
    assert loss.dtype == torch.float32 and loss.shape == ()
