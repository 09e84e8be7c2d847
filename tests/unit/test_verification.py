"""The LFW protocol against a direct, fold-by-fold computation of the module docstring's definitions."""

import numpy as np
import pytest

from facetrain.verification import evaluate_pairs, plot_roc, threshold_at_far

ACCURACY_GRID = np.arange(400) / 100  # {0, 0.01, ..., 3.99}
FAR_GRID = np.arange(4000) / 1000  # {0, 0.001, ..., 3.999}


def lfw_like(seed, folds=10, per_fold=60, separation=1.0, dropped=0.0):
    """Squared distances in [0, 4]: matched pairs closer on average; LFW fold layout, less a random share
    of ``dropped`` pairs (missing images), which leaves folds of unequal sizes."""
    rng = np.random.default_rng(seed)
    same = np.tile(np.r_[np.ones(per_fold // 2, bool), np.zeros(per_fold // 2, bool)], folds)
    distances = np.clip(np.where(same, rng.normal(1.2, 0.5, same.size), rng.normal(1.2 + separation, 0.5, same.size)),
                        0, 3.999)
    kept = rng.random(same.size) >= dropped
    return distances[kept], same[kept], np.repeat(np.arange(folds), per_fold)[kept]


def crowded(seed, folds=10, per_fold=60):
    """Distances on the midpoints of the 0.001 FAR grid, matched and mismatched pairs sharing a few cells, so
    that where inside a grid cell the VAL threshold falls decides which test pairs count."""
    rng = np.random.default_rng(seed)
    same = np.tile(np.r_[np.ones(per_fold // 2, bool), np.zeros(per_fold // 2, bool)], folds)
    cells = np.where(same, rng.integers(1010, 1025, same.size), rng.integers(1020, 1060, same.size))
    return (cells + 0.5) / 1000, same, np.repeat(np.arange(folds), per_fold)


def below(values, thresholds):
    """How many of ``values`` are < each threshold."""
    return np.searchsorted(np.sort(values), thresholds, side="left")


def eer_of_polyline(fpr, tpr):
    """Where the ROC polyline (points in threshold order, flat beyond its ends) meets FPR = 1 - TPR."""
    xs = np.r_[0.0, fpr, 1.0]
    ys = np.r_[tpr[0], tpr, tpr[-1]]
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:], strict=False):
        s0, s1 = x0 + y0 - 1, x1 + y1 - 1  # signed distance (scaled) to the line x + y = 1
        if s0 <= 0 <= s1 and s1 > s0:
            return x0 + (x1 - x0) * (-s0 / (s1 - s0))
    raise AssertionError("the ROC polyline never meets FPR = 1 - TPR")


def protocol(distances, same, folds, far_target):
    """The docstring's definitions, fold by fold, with rates counted by a sorted search."""
    accuracies, thresholds, vals, fars, tprs, fprs = [], [], [], [], [], []
    for k in np.unique(folds):
        test, train = folds == k, folds != k
        pos_train, neg_train = distances[train & same], distances[train & ~same]
        pos_test, neg_test = distances[test & same], distances[test & ~same]
        correct = below(pos_train, ACCURACY_GRID) + len(neg_train) - below(neg_train, ACCURACY_GRID)
        t = ACCURACY_GRID[np.flatnonzero(correct == correct.max())[0]]  # the first maximum
        thresholds.append(t)
        accuracies.append(((pos_test < t).sum() + (neg_test >= t).sum()) / test.sum())
        tprs.append(below(pos_test, ACCURACY_GRID) / len(pos_test))
        fprs.append(below(neg_test, ACCURACY_GRID) / len(neg_test))
        far_train = below(neg_train, FAR_GRID) / len(neg_train)
        reached = np.flatnonzero(far_train >= far_target)
        if len(reached) == 0:
            t_val = 0.0
        elif reached[0] == 0 or far_train[reached[0]] == far_target:
            t_val = FAR_GRID[reached[0]]
        else:
            i = reached[0]
            share = (far_target - far_train[i - 1]) / (far_train[i] - far_train[i - 1])
            t_val = FAR_GRID[i - 1] + share * (FAR_GRID[i] - FAR_GRID[i - 1])
        vals.append((pos_test < t_val).mean())
        fars.append((neg_test < t_val).mean())
    tpr, fpr = np.mean(tprs, 0), np.mean(fprs, 0)
    return {
        "accuracy": np.mean(accuracies), "accuracy_std": np.std(accuracies), "best_thresholds": thresholds,
        "val": np.mean(vals), "val_std": np.std(vals), "far": np.mean(fars),
        "fpr": fpr, "tpr": tpr, "auc": np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2),  # trapezoids
        "eer": eer_of_polyline(fpr, tpr),
    }


@pytest.mark.parametrize(("data", "far_target"), [
    (lfw_like(0), 1e-3), (lfw_like(1), 1e-2), (lfw_like(2, separation=0.3, dropped=0.2), 0.1), (crowded(3), 0.005),
])
def test_every_figure_matches_the_fold_by_fold_definitions(data, far_target):
    distances, same, folds = data
    result = evaluate_pairs(distances, same, folds, far_target=far_target)
    expected = protocol(distances, same, folds, far_target)
    assert result.best_thresholds == pytest.approx(expected["best_thresholds"], abs=1e-12)
    for name in ("accuracy", "accuracy_std", "val", "val_std", "far", "auc"):
        assert getattr(result, name) == pytest.approx(expected[name], rel=1e-12, abs=1e-12), name
    assert result.fpr == pytest.approx(expected["fpr"], abs=1e-12)
    assert result.tpr == pytest.approx(expected["tpr"], abs=1e-12)
    assert result.eer == pytest.approx(expected["eer"], abs=1e-9)
    assert (result.folds, result.pairs, result.far_target) == (10, len(same), far_target)
    assert 0 < result.val < 1 and 0 < result.eer < 0.5


def test_separable_and_inverted_pairs_give_the_extreme_figures():
    distances, same, folds = lfw_like(0)
    perfect = evaluate_pairs(np.where(same, 0.1, 3.0), same, folds)
    assert (perfect.accuracy, perfect.val, perfect.auc, perfect.eer) == (1.0, 1.0, 1.0, 0.0)
    assert perfect.far_target == 1e-3  # the default target
    inverted = evaluate_pairs(np.where(same, 3.995, 0.1), same, folds)  # matched pairs beyond every threshold
    assert (inverted.val, inverted.auc, inverted.eer) == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"^the protocol needs at least 2 folds$"):
        evaluate_pairs(distances, same, np.zeros_like(folds))
    assert evaluate_pairs(distances, same, folds % 2).folds == 2


def test_plain_lists_and_0_1_labels_give_the_same_figures():
    distances, same, folds = lfw_like(4)
    assert evaluate_pairs(distances.tolist(), same.astype(int).tolist(), folds.tolist()) == evaluate_pairs(
        distances, same, folds)


def test_a_fold_without_matched_or_without_mismatched_pairs_gives_no_nan():
    distances, same, folds = lfw_like(5)
    kept = ~((folds == 3) & same) & ~((folds == 6) & ~same)
    result = evaluate_pairs(distances[kept], same[kept], folds[kept])
    assert np.isfinite(list(result.metrics().values()) + result.tpr + result.fpr).all()


def test_metrics_are_the_scalar_figures():
    result = evaluate_pairs(*lfw_like(0))
    assert result.metrics() == {name: getattr(result, name) for name in (
        "accuracy", "accuracy_std", "val", "val_std", "far", "far_target", "auc", "eer", "pairs", "folds")}


def test_threshold_at_far_interpolates_between_the_neighbours():
    thresholds = np.array([0.0, 1.0, 2.0, 3.0])
    assert threshold_at_far(np.array([0.0, 0.0, 0.002, 0.01]), thresholds, 1e-3) == pytest.approx(1.5)
    assert threshold_at_far(np.array([0.0, 0.0, 0.0, 0.0]), thresholds, 1e-3) == 0.0
    assert threshold_at_far(np.array([0.0, 0.001, 0.5, 1.0]), thresholds, 1e-3) == 1.0
    assert threshold_at_far(np.array([0.0, 0.0005, 0.002, 0.01]), thresholds, 1e-3) == pytest.approx(1 + 1 / 3)
    assert threshold_at_far(np.array([0.0, 0.002, 0.01, 0.02]), thresholds, 1e-3) == pytest.approx(0.5)
    assert threshold_at_far(np.array([0.0, 0.0, 0.0, 0.001]), thresholds, 1e-3) == 3.0  # reached at the end
    assert threshold_at_far(np.array([0.5, 0.6, 0.7, 1.0]), thresholds, 1e-3) == 0.0  # at the first: no neighbour


def test_roc_png_is_written(tmp_path):
    distances, same, folds = lfw_like(0)
    plot_roc({"before": evaluate_pairs(np.random.default_rng(0).uniform(0, 4, same.size), same, folds),
              "after": evaluate_pairs(distances, same, folds)}, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
