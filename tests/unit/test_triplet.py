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


# --- pytorch-metric-learning (PML) as an independent reference -------------------------------------------
# Its distance is set to ours: LpDistance(normalize_embeddings=False) (our inputs are already unit vectors,
# and PML's normalisation would add its own Jacobian to the gradients), power=2 for squared distances.
# PML's miners and TripletMarginLoss share our hinge, relu(d(a,p) - d(a,n) + margin), and exclude the
# anchor from its positives. What differs: PML's default reducer, AvgNonZeroReducer, averages over
# non-zero losses; ours does that for batch_all only, and averages batch_hard over all anchors (Hermans
# et al.) and semi_hard over all positive pairs (FaceNet), so those compare with MeanReducer or SumReducer.
# Not compared: PML's ref_emb form (cross-rank) keeps the anchor's own row as a positive at distance 0.


def pml_parts(squared):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances, losses, miners, reducers

    distance = distances.LpDistance(normalize_embeddings=False, power=2 if squared else 1)
    return distance, losses, miners, reducers


def clustered(seed, identities=8, per_identity=4, singletons=3, dim=16, spread=0.2):
    """Unit embeddings around one centre per identity, in shuffled order, with a few singleton identities
    (anchors without a positive) and one image of identity 0 opposite its centre (every negative nearer than
    that positive): some triplets are satisfied, some not, in every mode."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.arange(identities).repeat_interleave(per_identity),
                        identities + torch.arange(singletons)])
    centres = torch.randn(identities + singletons, dim, generator=generator, dtype=torch.float64)
    noise = spread * torch.randn(len(labels), dim, generator=generator, dtype=torch.float64)
    emb = torch.nn.functional.normalize(torch.nn.functional.normalize(centres, dim=1)[labels] + noise, dim=1)
    emb[0] = -emb[0]
    order = torch.randperm(len(labels), generator=generator)
    return emb[order], labels[order]


def loss_and_grad(loss_fn, emb):
    emb = emb.clone().requires_grad_()
    loss = loss_fn(emb)
    loss.backward()
    return loss.detach(), emb.grad


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_batch_hard_equals_pml_batch_hard_miner(seed, squared):
    """BatchHardMiner (farthest positive, nearest negative per anchor, anchors with both) + TripletMarginLoss:
    with MeanReducer the same loss and gradients; PML's default reducer is our sum over the active anchors."""
    margin = 0.2 if squared else 0.1
    distance, losses, miners, reducers = pml_parts(squared)
    emb, labels = clustered(seed)
    miner = miners.BatchHardMiner(distance=distance)
    mean_loss = losses.TripletMarginLoss(margin=margin, distance=distance, reducer=reducers.MeanReducer())
    theirs, their_grad = loss_and_grad(lambda e: mean_loss(e, labels, miner(e, labels)), emb)
    loss, grad = loss_and_grad(lambda e: ours(e, labels, margin, "batch_hard", squared)[0], emb)
    assert loss.item() == pytest.approx(theirs.item(), rel=1e-12)
    torch.testing.assert_close(grad, their_grad, rtol=1e-10, atol=1e-12)
    total, count, stats = triplet_loss(emb, labels, emb, labels, torch.arange(len(emb)), margin, "batch_hard",
                                       squared)
    assert count == len(miner(emb, labels)[0]) == len(emb) - 3  # the 3 singletons have no positive
    assert 0.2 < stats.active_fraction < 0.9  # some anchors satisfied: the two reducers differ here
    nonzero = losses.TripletMarginLoss(margin=margin, distance=distance)(emb, labels, miner(emb, labels))
    assert (total / (stats.active_fraction * count)).item() == pytest.approx(nonzero.item(), rel=1e-12)
    assert nonzero.item() > theirs.item()


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_batch_all_equals_pml_all_triplets(seed, squared):
    """TripletMarginMiner(type_of_triplets="all") keeps d(a,n) - d(a,p) <= margin (zero losses included);
    TripletMarginLoss's default AvgNonZeroReducer then averages the non-zero ones: our batch_all exactly.
    Without a miner PML enumerates every triplet itself: the same value."""
    margin = 0.2 if squared else 0.1
    distance, losses, miners, _ = pml_parts(squared)
    emb, labels = clustered(seed)
    miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="all", distance=distance)
    loss_fn = losses.TripletMarginLoss(margin=margin, distance=distance)
    theirs, their_grad = loss_and_grad(lambda e: loss_fn(e, labels, miner(e, labels)), emb)
    loss, grad = loss_and_grad(lambda e: ours(e, labels, margin, "batch_all", squared)[0], emb)
    assert loss.item() == pytest.approx(theirs.item(), rel=1e-12)
    torch.testing.assert_close(grad, their_grad, rtol=1e-10, atol=1e-12)
    assert loss_fn(emb, labels).item() == pytest.approx(theirs.item(), rel=1e-12)
    _, count, stats = triplet_loss(emb, labels, emb, labels, torch.arange(len(emb)), margin, "batch_all", squared)
    dist, (a, p, n) = distance(emb), miner(emb, labels)
    assert count == (dist[a, p] - dist[a, n] + margin > 0).sum() and 0 < len(a) < stats.triplets


def semi_hard_choice(dist, labels, semihard, hard):
    """FaceNet's choice per positive pair, from PML's triplet sets: among the semi-hard triplets of (a, p)
    (PML: 0 < d(a,n) - d(a,p) <= margin) the one with the largest loss; when every negative is hard (PML:
    d(a,n) <= d(a,p)), the one with the smallest; otherwise (the nearest negative farther than p is beyond
    the margin) no triplet, a zero loss. Returns the chosen triplets, the pair count and the count per case."""
    by_pair = {}
    for kind, triplets in (("semihard", semihard), ("hard", hard)):
        for a, p, n in zip(*(t.tolist() for t in triplets), strict=True):
            by_pair.setdefault((a, p), {}).setdefault(kind, []).append(n)
    chosen, cases = [], {"semihard": 0, "all hard": 0, "easy": 0}
    pairs = [(a, p) for a in range(len(labels)) for p in range(len(labels))
             if a != p and labels[a] == labels[p] and (labels != labels[a]).any()]
    for a, p in pairs:
        found = by_pair.get((a, p), {})
        if found.get("semihard"):
            chosen.append((a, p, min(found["semihard"], key=lambda n: dist[a, n].item())))
            cases["semihard"] += 1
        elif len(found.get("hard", [])) == int((labels != labels[a]).sum()):
            chosen.append((a, p, max(found["hard"], key=lambda n: dist[a, n].item())))
            cases["all hard"] += 1
        else:
            cases["easy"] += 1
    return torch.tensor(chosen).T, len(pairs), cases


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_semi_hard_is_facenets_choice_among_pml_semihard_triplets(seed, squared):
    """PML has no per-pair semi-hard miner: TripletMarginMiner("semihard") returns *every* semi-hard triplet,
    and its mean over them is another loss (checked to differ below). Where the definitions meet, per
    positive pair, ours equals PML's TripletMarginLoss (SumReducer, over our pair count) on the triplets
    chosen from PML's semihard and hard sets (semi_hard_choice): values and gradients."""
    margin = 0.2 if squared else 0.1
    distance, losses, miners, reducers = pml_parts(squared)
    emb, labels = clustered(seed)
    mined = {kind: miners.TripletMarginMiner(margin=margin, type_of_triplets=kind, distance=distance)(emb, labels)
             for kind in ("semihard", "hard")}
    chosen, num_pairs, cases = semi_hard_choice(distance(emb), labels, mined["semihard"], mined["hard"])
    assert min(cases.values()) > 0, cases  # every branch of the definition is exercised
    summed = losses.TripletMarginLoss(margin=margin, distance=distance, reducer=reducers.SumReducer())
    theirs, their_grad = loss_and_grad(lambda e: summed(e, labels, tuple(chosen)) / num_pairs, emb)
    loss, grad = loss_and_grad(lambda e: ours(e, labels, margin, "semi_hard", squared)[0], emb)
    assert loss.item() == pytest.approx(theirs.item(), rel=1e-12)
    torch.testing.assert_close(grad, their_grad, rtol=1e-10, atol=1e-12)
    assert ours(emb, labels, margin, "semi_hard", squared)[1].triplets == num_pairs
    every_semi_hard = losses.TripletMarginLoss(margin=margin, distance=distance)(emb, labels, mined["semihard"])
    assert every_semi_hard.item() != pytest.approx(loss.item(), rel=1e-3)


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("mining", MODES)
def test_tied_distances_equal_pml(mining, squared):
    """Exactly tied 1-D distances, and losses of exactly 0 (d(a,n) - d(a,p) = margin: mined by PML's
    "all" miner, dropped by its reducer): the strict and non-strict inequalities must be PML's."""
    margin = 1.0
    distance, losses, miners, reducers = pml_parts(squared)
    emb, labels = TIED
    loss, _ = ours(emb, labels, margin, mining, squared)
    if mining == "batch_all":
        theirs = losses.TripletMarginLoss(margin=margin, distance=distance)(emb, labels)
    elif mining == "batch_hard":
        mean_loss = losses.TripletMarginLoss(margin=margin, distance=distance, reducer=reducers.MeanReducer())
        theirs = mean_loss(emb, labels, miners.BatchHardMiner(distance=distance)(emb, labels))
    else:
        mined = [miners.TripletMarginMiner(margin=margin, type_of_triplets=kind, distance=distance)(emb, labels)
                 for kind in ("semihard", "hard")]
        chosen, num_pairs, _ = semi_hard_choice(distance(emb), labels, *mined)
        summed = losses.TripletMarginLoss(margin=margin, distance=distance, reducer=reducers.SumReducer())
        theirs = summed(emb, labels, tuple(chosen)) / num_pairs
    assert loss.item() == pytest.approx(theirs.item(), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("chunk", [1, 500, 10**9])
def test_batch_all_is_the_same_in_any_chunking(monkeypatch, chunk):
    """Batch-all's triplet tensor is built over chunks of anchors. Here P x N = 3 x 35 elements per anchor:
    a bound of 1 gives one anchor per chunk, 500 four (the last chunk short), 10^9 the whole batch at once."""
    emb, labels = clustered(4)
    monkeypatch.setattr(triplet, "TRIPLET_CHUNK", chunk)
    loss, grad = loss_and_grad(lambda e: ours(e, labels, 0.2, "batch_all", True)[0], emb)
    expected, expected_grad = loss_and_grad(lambda e: brute_force(e, labels, 0.2, "batch_all", True), emb)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mining", MODES)
@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3]], ids=["no negatives", "no positives"])
def test_a_batch_without_triplets_gives_zero_loss_and_zero_statistics(mining, labels):
    emb = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    emb.requires_grad_(True)
    total, count, stats = triplet_loss(emb, torch.tensor(labels), emb, torch.tensor(labels), torch.arange(4), 0.2,
                                       mining, True)
    total.backward()
    assert (total.item(), int(count), stats.triplets) == (0.0, 0, 0)
    assert not emb.grad.any()
    assert all(float(getattr(stats, name)) == 0.0 for name in
               ("active_fraction", "mean_positive_distance", "mean_negative_distance"))
    # the nearest negative in the batch: none without negatives, else the closest pair of two identities
    distances = torch.cdist(emb.detach().double(), emb.detach().double()) ** 2
    nearest = 0.0 if labels[0] == labels[1] else distances[~torch.eye(4, dtype=torch.bool)].min().item()
    assert float(stats.hardest_negative_distance) == pytest.approx(nearest, abs=1e-6)


@pytest.mark.parametrize("mining", MODES)
def test_one_anchor_with_one_positive_and_one_negative_is_one_triplet(mining):
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)  # d_ap 2, d_an 0.8
    labels = torch.tensor([0, 0, 1])
    total, count, stats = triplet_loss(emb[:1], labels[:1], emb, labels, torch.tensor([0]), 0.2, mining, True)
    assert int(count) == 1 and stats.triplets == 1
    assert total.item() == pytest.approx(2.0 - 0.8 + 0.2)
    assert float(stats.active_fraction) == 1.0
    assert float(stats.hardest_negative_distance) == pytest.approx(0.8)


@pytest.mark.parametrize("mining", MODES)
def test_no_anchors_at_all_is_no_triplet(mining):  # a rank whose share of a cross-rank batch is empty
    emb, labels = clustered(1)
    total, count, stats = triplet_loss(emb[:0], labels[:0], emb, labels, torch.zeros(0, dtype=torch.long), 0.2,
                                       mining, True)
    assert (total.item(), int(count), stats.triplets, float(stats.hardest_negative_distance)) == (0.0, 0, 0, 0.0)
