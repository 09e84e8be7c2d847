"""The LFW protocol against a direct, loop-by-loop computation of the same definitions."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from facetrain.verification import ACCURACY_THRESHOLDS, evaluate_pairs, plot_roc, threshold_at_far


def lfw_like(seed, folds=10, per_fold=60, separation=1.0):
    """Squared distances in [0, 4]: matched pairs closer on average; LFW fold layout."""
    rng = np.random.default_rng(seed)
    same = np.tile(np.r_[np.ones(per_fold // 2, bool), np.zeros(per_fold // 2, bool)], folds)
    distances = np.clip(np.where(same, rng.normal(1.2, 0.5, same.size), rng.normal(1.2 + separation, 0.5, same.size)),
                        0, 3.999)
    return distances, same, np.repeat(np.arange(folds), per_fold)


def direct_accuracy(distances, same, folds):
    """Pure-Python reading of the protocol: best threshold on 9 folds, accuracy on the 10th."""
    accuracies, thresholds = [], []
    for k in sorted(set(folds.tolist())):
        train = [i for i in range(len(same)) if folds[i] != k]
        test = [i for i in range(len(same)) if folds[i] == k]
        best_t, best_acc = None, -1.0
        for t in ACCURACY_THRESHOLDS:
            acc = sum((distances[i] < t) == same[i] for i in train) / len(train)
            if acc > best_acc:
                best_t, best_acc = t, acc
        thresholds.append(best_t)
        accuracies.append(sum((distances[i] < best_t) == same[i] for i in test) / len(test))
    return accuracies, thresholds


@pytest.mark.parametrize("seed", range(3))
def test_accuracy_and_thresholds_match_the_direct_computation(seed):
    distances, same, folds = lfw_like(seed)
    result = evaluate_pairs(distances, same, folds)
    accuracies, thresholds = direct_accuracy(distances, same, folds)
    assert result.best_thresholds == pytest.approx(thresholds)
    assert result.accuracy == pytest.approx(np.mean(accuracies))
    assert result.accuracy_std == pytest.approx(np.std(accuracies))
    assert result.folds == 10 and result.pairs == len(same)


def test_roc_auc_and_eer_are_consistent():
    distances, same, folds = lfw_like(0, per_fold=200)
    result = evaluate_pairs(distances, same, folds)
    pooled = roc_auc_score(same, -distances)  # a fold-free AUC of the same scores
    assert result.auc == pytest.approx(pooled, abs=0.01)
    fpr, tpr = np.array(result.fpr), np.array(result.tpr)
    assert np.interp(result.eer, fpr, tpr) == pytest.approx(1 - result.eer, abs=1e-6)
    assert 0 < result.eer < 0.5


def test_val_at_far_uses_the_training_folds_and_reports_the_far_reached():
    distances, same, folds = lfw_like(1, per_fold=2000)
    result = evaluate_pairs(distances, same, folds, far_target=1e-2)
    assert result.far == pytest.approx(1e-2, abs=5e-3)
    assert 0 < result.val < 1
    perfect = evaluate_pairs(np.where(same, 0.1, 3.0), same, folds)
    assert (perfect.accuracy, perfect.val, perfect.auc, perfect.eer) == (1.0, 1.0, 1.0, 0.0)


def test_threshold_at_far_interpolates_between_the_neighbours():
    thresholds = np.array([0.0, 1.0, 2.0, 3.0])
    assert threshold_at_far(np.array([0.0, 0.0, 0.002, 0.01]), thresholds, 1e-3) == pytest.approx(1.5)
    assert threshold_at_far(np.array([0.0, 0.0, 0.0, 0.0]), thresholds, 1e-3) == 0.0
    assert threshold_at_far(np.array([0.0, 0.001, 0.5, 1.0]), thresholds, 1e-3) == 1.0


def test_roc_png_is_written(tmp_path):
    distances, same, folds = lfw_like(0)
    plot_roc({"before": evaluate_pairs(np.random.default_rng(0).uniform(0, 4, same.size), same, folds),
              "after": evaluate_pairs(distances, same, folds)}, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
