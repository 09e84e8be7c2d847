"""The LFW protocol against direct computations of the module docstring's definitions: a float64 loop over
every candidate threshold for the fold figures, scikit-learn and pair-by-pair counts for ROC, AUC, EER, TAR."""

from fractions import Fraction
from itertools import pairwise

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from facetrain.verification import evaluate_pairs, plot_roc, split_thresholds, threshold_at_far


def lfw_like(seed, folds=10, per_fold=60, separation=1.0, dropped=0.0):
    """Squared distances in [0, 4]: matched pairs closer on average; LFW fold layout, less a random share
    of ``dropped`` pairs (missing images), which leaves folds of unequal sizes."""
    rng = np.random.default_rng(seed)
    same = np.tile(np.r_[np.ones(per_fold // 2, bool), np.zeros(per_fold // 2, bool)], folds)
    distances = np.clip(np.where(same, rng.normal(1.2, 0.5, same.size), rng.normal(1.2 + separation, 0.5, same.size)),
                        0, 3.999)
    kept = rng.random(same.size) >= dropped
    return distances[kept], same[kept], np.repeat(np.arange(folds), per_fold)[kept]


def tied(seed, folds=10, per_fold=60):
    """Distances on a few values shared by matched and mismatched pairs: ties decide every figure."""
    rng = np.random.default_rng(seed)
    same = np.tile(np.r_[np.ones(per_fold // 2, bool), np.zeros(per_fold // 2, bool)], folds)
    cells = np.where(same, rng.integers(1010, 1025, same.size), rng.integers(1020, 1060, same.size))
    return cells / 1000, same, np.repeat(np.arange(folds), per_fold)


def untrained(seed, folds=10, per_fold=60):
    """An untrained model's squared distances: all within [0.004, 0.093], ten cells of a 0.01 grid."""
    rng = np.random.default_rng(seed)
    same = np.tile(np.r_[np.ones(per_fold // 2, bool), np.zeros(per_fold // 2, bool)], folds)
    distances = np.where(same, rng.uniform(0.004, 0.06, same.size), rng.uniform(0.025, 0.093, same.size))
    return distances, same, np.repeat(np.arange(folds), per_fold)


def without_positives_in_a_fold(seed):
    distances, same, folds = lfw_like(seed)
    kept = ~((folds == 3) & same) & ~((folds == 6) & ~same)
    return distances[kept], same[kept], folds[kept]


def rejecting_all_is_one_pair_short():
    """Two identical folds of matched 1.0, mismatched 2.0 and 3.0, matched 4.0: accepting below 1.5 gets 3 of 4
    right, rejecting every pair 2."""
    return np.tile([1.0, 2.0, 3.0, 4.0], 2), np.tile([True, False, False, True], 2), np.repeat([0, 1], 4)


def candidates(values):
    """Every distinct split of ``values`` by d < t: the smallest value, the midpoint of each gap between
    consecutive distinct values (the upper value where the midpoint rounds onto the lower), just above the
    largest."""
    distinct = sorted(set(values.tolist()))
    inner = [(lo + hi) / 2 if lo < (lo + hi) / 2 else hi for lo, hi in pairwise(distinct)]
    return [distinct[0], *inner, np.nextafter(distinct[-1], np.inf)]


def rate(hits, pool):
    return hits.sum() / pool.sum() if pool.sum() else 0.0


def brute_protocol(distances, same, folds, far_target):
    """Fold by fold: try every candidate threshold of the training folds, one at a time."""
    accuracies, thresholds, vals, fars = [], [], [], []
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        best_t, best_correct = None, -1
        for t in candidates(distances[train]):
            correct = ((distances[train] < t) == same[train]).sum()
            if correct > best_correct:  # strictly better: the first (smallest) threshold wins a tie
                best_t, best_correct = t, correct
        thresholds.append(best_t)
        accuracies.append(((distances[test] < best_t) == same[test]).mean())
        mismatched = distances[train & ~same]
        t_val = None
        for t in candidates(mismatched):
            if (mismatched < t).mean() <= far_target:
                t_val = t  # the last, i.e. largest, that keeps FAR within the target
        accepted = distances[test] < t_val
        vals.append(rate(accepted & same[test], same[test]))
        fars.append(rate(accepted & ~same[test], ~same[test]))
    return {"accuracy": np.mean(accuracies), "accuracy_std": np.std(accuracies), "best_thresholds": thresholds,
            "val": np.mean(vals), "val_std": np.std(vals), "far": np.mean(fars)}


def exact_auc(distances, same):
    """Pair by pair: a matched pair closer than a mismatched one counts 1, an equal distance 1/2."""
    pos, neg = distances[same][:, None], distances[~same][None, :]
    return float(Fraction(int(2 * (pos < neg).sum() + (pos == neg).sum()), 2 * pos.size * neg.size))


def eer_of_polyline(fpr, tpr):
    """Where the ROC polyline (points from (0, 0) to (1, 1)) meets FPR = 1 - TPR."""
    for x0, y0, x1, y1 in zip(fpr, tpr, fpr[1:], tpr[1:], strict=False):
        s0, s1 = x0 + y0 - 1, x1 + y1 - 1  # signed distance (scaled) to the line x + y = 1
        if s0 < 0 <= s1:
            return x0 + (x1 - x0) * (-s0 / (s1 - s0))
    raise AssertionError("the ROC polyline never meets FPR = 1 - TPR")


def brute_tar_at_far(distances, same, target):
    """Over every threshold: the highest TPR with FPR <= target, and the lowest FPR giving it."""
    points = [((distances[same] < t).mean(), (distances[~same] < t).mean()) for t in candidates(distances)]
    tar = max(tpr for tpr, fpr in points if fpr <= target)
    return tar, min(fpr for tpr, fpr in points if tpr == tar)


FOLD_CASES = [(lfw_like(0), 1e-3), (lfw_like(1), 1e-2), (lfw_like(2, separation=0.3, dropped=0.2), 0.1),
              (tied(3), 0.005), (tied(4), 0.05), (untrained(5), 0.02), (without_positives_in_a_fold(6), 0.01),
              (rejecting_all_is_one_pair_short(), 0.5)]


@pytest.mark.parametrize(("data", "far_target"), FOLD_CASES)
def test_fold_figures_match_a_loop_over_every_candidate_threshold(data, far_target):
    distances, same, folds = data
    result = evaluate_pairs(distances, same, folds, far_target=far_target)
    expected = brute_protocol(distances, same, folds, far_target)
    assert result.best_thresholds == pytest.approx(expected["best_thresholds"], rel=1e-15, abs=0)
    for name in ("accuracy", "accuracy_std", "val", "val_std", "far"):
        assert getattr(result, name) == pytest.approx(expected[name], rel=1e-12, abs=1e-15), name
    assert (result.folds, result.pairs, result.far_target) == (len(np.unique(folds)), len(same), far_target)


def test_float32_distances_get_float64_thresholds():
    distances, same, folds = lfw_like(7)
    distances = distances.astype(np.float32)
    result = evaluate_pairs(distances, same, folds)
    expected = brute_protocol(distances.astype(float), same, folds, 1e-3)
    assert result.best_thresholds == pytest.approx(expected["best_thresholds"], rel=1e-15, abs=0)


@pytest.mark.parametrize("data", [lfw_like(0), lfw_like(8, separation=0.2), tied(3), untrained(5)])
def test_roc_auc_and_eer_match_scikit_learn_on_all_pairs(data):
    distances, same, folds = data
    result = evaluate_pairs(distances, same, folds)
    fpr, tpr, _ = roc_curve(same, -distances)  # a higher score means "same": the score is -d
    assert result.fpr == fpr.tolist() and result.tpr == tpr.tolist()
    assert result.auc == exact_auc(distances, same)  # exact: counts, then one division
    assert result.auc == pytest.approx(roc_auc_score(same, -distances), rel=1e-15, abs=0)
    full_fpr, full_tpr, _ = roc_curve(same, -distances, drop_intermediate=False)
    assert result.eer == pytest.approx(eer_of_polyline(full_fpr, full_tpr), abs=1e-15)
    # Directly: the threshold where FPR and FNR are closest; their mean is within one ROC step of the EER.
    points = np.array([((distances[~same] < t).mean(), (distances[same] >= t).mean()) for t in candidates(distances)])
    closest = points[np.argmin(np.abs(points[:, 0] - points[:, 1]))]
    steps = [np.max(np.abs(np.diff(points[:, column]))) for column in (0, 1)]
    assert abs(result.eer - closest.mean()) <= sum(steps) / 2 + 1e-12
    if len(np.unique(distances)) == len(distances):  # no ties: one step is one pair
        assert max(steps) == pytest.approx(1 / min(same.sum(), (~same).sum()))


def test_where_a_grid_blurs_the_figures_the_exact_ones_are_reported():
    """Distances within [0.004, 0.093]: the 0.01 grid of the references sees ten cells."""
    distances, same, folds = untrained(1)
    result = evaluate_pairs(distances, same, folds)
    assert result.accuracy == pytest.approx(brute_protocol(distances, same, folds, 1e-3)["accuracy"], abs=1e-15)
    assert result.auc == exact_auc(distances, same)
    grid = np.arange(400) / 100
    grid_accuracies, grid_tprs, grid_fprs = [], [], []
    for k in range(10):
        train, test = folds != k, folds == k
        t = grid[np.argmax([((distances[train] < t) == same[train]).sum() for t in grid])]
        grid_accuracies.append(((distances[test] < t) == same[test]).mean())
        grid_tprs.append([(distances[test & same] < t).mean() for t in grid])
        grid_fprs.append([(distances[test & ~same] < t).mean() for t in grid])
    tpr, fpr = np.mean(grid_tprs, 0), np.mean(grid_fprs, 0)
    grid_auc = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert (result.accuracy, np.mean(grid_accuracies)) == (pytest.approx(0.7517, abs=1e-4), pytest.approx(0.765))
    assert (result.auc, grid_auc) == (pytest.approx(0.8688, abs=1e-4), pytest.approx(0.8655, abs=1e-4))
    assert len(result.fpr) > 100  # the exact curve's corners, where the grid has nine inner points


def test_tar_at_far_matches_a_loop_over_every_threshold_and_needs_1_over_far_mismatched_pairs():
    distances, same, folds = lfw_like(9, per_fold=200, separation=1.5)  # exactly 1000 mismatched pairs
    result = evaluate_pairs(distances, same, folds)
    tar, far = brute_tar_at_far(distances, same, 1e-3)
    assert (result.tar_at_far["1e-3"], result.far_achieved["1e-3"]) == (tar, far)
    assert 0 < tar < 1 and far <= 1e-3
    assert result.tar_at_far["1e-4"] is result.far_achieved["1e-4"] is None
    assert result.tar_undefined == {"1e-4": "needs at least 10000 mismatched pairs, has 1000",
                                    "1e-5": "needs at least 100000 mismatched pairs, has 1000"}
    metrics = result.metrics()
    assert (metrics["tar_at_far_1e-3"], metrics["far_achieved_1e-3"], metrics["tar_at_far_1e-5"]) == (tar, far, None)


def test_tar_at_far_1e_4_against_scikit_learn():
    distances, same, folds = lfw_like(10, per_fold=2000, separation=2.0)  # 10,000 mismatched pairs
    result = evaluate_pairs(distances, same, folds)
    fpr, tpr, _ = roc_curve(same, -distances, drop_intermediate=False)
    for label, target in (("1e-3", 1e-3), ("1e-4", 1e-4)):
        tar = tpr[fpr <= target].max()
        assert (result.tar_at_far[label], result.far_achieved[label]) == (tar, fpr[tpr == tar].min())
    assert result.tar_at_far["1e-5"] is None and list(result.tar_undefined) == ["1e-5"]


def test_tar_at_far_takes_the_target_itself_and_the_lowest_far_for_that_tar():
    """10 matched and 2000 mismatched pairs in a fixed order by distance; FAR 1e-3 allows 2 false accepts."""
    distances, folds = np.arange(2010) / 2010, np.arange(2010) % 2
    # 2 matched, 1 mismatched, 2 matched, 1 mismatched, 2 matched, then 1 mismatched: FAR 2/2000 = 1e-3 itself
    # gives TAR 6/10.
    same = np.r_[1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, [0] * 1995].astype(bool)
    result = evaluate_pairs(distances, same, folds)
    assert (result.tar_at_far["1e-3"], result.far_achieved["1e-3"]) == (0.6, 0.001)
    assert (result.tar_at_far["1e-3"], result.far_achieved["1e-3"]) == brute_tar_at_far(distances, same, 1e-3)
    # 2 matched, 1 mismatched, 3 matched, then 2 mismatched: TAR 5/10 already at FAR 1/2000.
    same = np.r_[1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1, [0] * 1996].astype(bool)
    result = evaluate_pairs(distances, same, folds)
    assert (result.tar_at_far["1e-3"], result.far_achieved["1e-3"]) == (0.5, 0.0005)


def test_split_thresholds_take_the_midpoint_of_each_gap():
    thresholds, below = split_thresholds(np.array([1.0, 1.0, 2.0, 4.0]))
    assert thresholds.tolist() == [1.0, 1.5, 3.0, np.nextafter(4.0, 5.0)]
    assert below.tolist() == [0, 2, 3, 4]
    adjacent = np.array([0.5, 1.0, np.nextafter(1.0, 2.0)])  # the second midpoint would round onto 1.0
    assert split_thresholds(adjacent)[0].tolist() == [0.5, 0.75, adjacent[2], np.nextafter(adjacent[2], 2.0)]


def test_adjacent_floats_are_still_split():
    same = np.tile([True, False], 10)
    result = evaluate_pairs(np.where(same, 1.0, np.nextafter(1.0, 2.0)), same, np.arange(20) // 2 % 2)
    assert (result.accuracy, result.val, result.far, result.auc, result.eer) == (1.0, 1.0, 0.0, 1.0, 0.0)


def test_threshold_at_far_keeps_far_within_the_target_and_takes_the_gap_midpoint():
    mismatched = np.array([0.1, 0.2, 0.2, 0.4])
    assert threshold_at_far(mismatched, 0.25) == pytest.approx(0.15)  # FAR 1/4 = the target: allowed
    assert threshold_at_far(mismatched, 0.7) == pytest.approx(0.15)  # the tie at 0.2 comes in whole: 3/4
    assert threshold_at_far(mismatched, 0.75) == pytest.approx(0.3)
    assert threshold_at_far(mismatched, 0.2) == 0.1  # below 1/4: accept none


def test_separable_and_inverted_pairs_give_the_extreme_figures():
    distances, same, folds = lfw_like(0)
    perfect = evaluate_pairs(np.where(same, 0.1, 3.0), same, folds)
    assert (perfect.accuracy, perfect.val, perfect.far, perfect.auc, perfect.eer) == (1.0, 1.0, 0.0, 1.0, 0.0)
    assert perfect.far_target == 1e-3  # the default target
    inverted = evaluate_pairs(np.where(same, 3.995, 0.1), same, folds)  # matched pairs beyond every threshold
    assert (inverted.val, inverted.auc, inverted.eer) == (0.0, 0.0, 1.0)
    assert evaluate_pairs(distances, same, folds % 2).folds == 2


@pytest.mark.parametrize(("change", "message"), [
    (lambda d, s, f: (d, s, np.zeros_like(f)), "the protocol needs at least 2 folds"),
    (lambda d, s, f: (d, s, np.where(s, 0, f)), "matched and mismatched pairs must each lie in at least 2 folds"),
    (lambda d, s, f: (d, s, np.where(s, f, 0)), "matched and mismatched pairs must each lie in at least 2 folds"),
])
def test_layouts_the_protocol_cannot_score_are_refused(change, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        evaluate_pairs(*change(*lfw_like(0)))


@pytest.mark.parametrize("far_target", [0.0, 1.0])
def test_a_far_target_outside_0_1_is_refused(far_target):
    with pytest.raises(ValueError, match=rf"^far_target must lie in \(0, 1\), got {far_target}$"):
        evaluate_pairs(*lfw_like(0), far_target=far_target)


def test_plain_lists_and_0_1_labels_give_the_same_figures():
    distances, same, folds = lfw_like(4)
    assert evaluate_pairs(distances.tolist(), same.astype(int).tolist(), folds.tolist()) == evaluate_pairs(
        distances, same, folds)


def test_a_fold_without_matched_or_without_mismatched_pairs_gives_no_nan():
    result = evaluate_pairs(*without_positives_in_a_fold(5))
    assert np.isfinite([v for v in result.metrics().values() if v is not None] + result.tpr + result.fpr).all()


def test_metrics_are_the_scalar_figures_and_tar_at_far():
    result = evaluate_pairs(*lfw_like(0))
    assert result.metrics() == {
        **{name: getattr(result, name) for name in (
            "accuracy", "accuracy_std", "val", "val_std", "far", "far_target", "auc", "eer", "pairs", "folds")},
        "tar_at_far_1e-3": None, "far_achieved_1e-3": None, "tar_at_far_1e-4": None, "far_achieved_1e-4": None,
        "tar_at_far_1e-5": None, "far_achieved_1e-5": None}
    assert all(type(v) in (float, int) for v in result.metrics().values() if v is not None)


def test_roc_png_is_written(tmp_path):
    distances, same, folds = lfw_like(0)
    plot_roc({"before": evaluate_pairs(np.random.default_rng(0).uniform(0, 4, same.size), same, folds),
              "after": evaluate_pairs(distances, same, folds)}, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
