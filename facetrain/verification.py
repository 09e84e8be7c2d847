"""The LFW verification protocol (REFERENCE.md §7.5; davidsandberg/facenet ``facenet.py`` and
insightface ``verification.py`` compute the same thing).

Pairs carry their fold (LFW: 10 folds of 300 matched + 300 mismatched, from pairs.txt order),
so a pair dropped for a missing image never shifts the others' folds.  Distances are squared
Euclidean distances of unit embeddings (0..4); a pair is predicted "same" when d < t.

* accuracy: for each fold k, t*_k maximises accuracy on the other folds over t in
  {0, 0.01, ..., 3.99} (first maximum); Acc_k is the accuracy of t*_k on fold k; report the
  mean and standard deviation over folds;
* VAL@FAR: on the other folds, the threshold where FAR reaches the target (1e-3) over
  {0, 0.001, ..., 3.999}, linearly interpolated between the last threshold below the target and
  the first at or above it (the references call scipy's interp1d on FAR(t), which is ill-posed
  where FAR(t) repeats; this is its well-defined reading), 0 if FAR never reaches it; VAL_k and
  FAR_k measured on fold k.  With 300 negatives per LFW fold, FAR moves in steps of 1/300;
* ROC: TPR and FPR of each test fold at every accuracy threshold, averaged over folds; AUC of that
  curve (trapezoid) and EER, where FPR = 1 - TPR (brentq on the interpolated curve).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from sklearn.metrics import auc

ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)
FAR_THRESHOLDS = np.arange(0, 4, 0.001)


@dataclass
class VerificationResult:
    accuracy: float
    accuracy_std: float
    val: float
    val_std: float
    far: float
    """Mean FAR actually reached on the test folds at the VAL threshold."""
    far_target: float
    auc: float
    eer: float
    pairs: int
    folds: int
    best_thresholds: list[float] = field(default_factory=list)
    fpr: list[float] = field(default_factory=list, repr=False)
    tpr: list[float] = field(default_factory=list, repr=False)

    def metrics(self) -> dict[str, float]:
        """The scalar figures, for results.json and the printed table."""
        return {k: v for k, v in asdict(self).items() if isinstance(v, (int, float))}


def rates(distances: np.ndarray, same: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per threshold: accuracy, true-positive rate (VAL), false-positive rate (FAR)."""
    predicted_TN = distances[None, :] < thresholds[:, None]
    true_positive = (predicted_TN & same).sum(1)
    false_positive = (predicted_TN & ~same).sum(1)
    true_negative = (~predicted_TN & ~same).sum(1)
    positives, negatives = same.sum(), (~same).sum()
    accuracy = (true_positive + true_negative) / len(same)
    tpr = true_positive / positives if positives else np.zeros(len(thresholds))
    fpr = false_positive / negatives if negatives else np.zeros(len(thresholds))
    return accuracy, tpr, fpr


def threshold_at_far(far_T: np.ndarray, thresholds: np.ndarray, target: float) -> float:
    """Where the non-decreasing FAR(t) reaches ``target``, linearly interpolated; 0 if never."""
    if far_T.max() < target:
        return 0.0
    first = int(np.argmax(far_T >= target))
    if first == 0 or far_T[first] == target:
        return float(thresholds[first])
    below = first - 1
    share = (target - far_T[below]) / (far_T[first] - far_T[below])
    return float(thresholds[below] + share * (thresholds[first] - thresholds[below]))


def evaluate_pairs(distances: np.ndarray, same: np.ndarray, folds: np.ndarray,
                   far_target: float = 1e-3) -> VerificationResult:
    distances, same, folds = np.asarray(distances, float), np.asarray(same, bool), np.asarray(folds)
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise ValueError("the protocol needs at least 2 folds")
    accuracies, best, vals, fars, tprs, fprs = [], [], [], [], [], []
    for fold in fold_ids:
        train, test = folds != fold, folds == fold
        train_accuracy, _, _ = rates(distances[train], same[train], ACCURACY_THRESHOLDS)
        threshold = ACCURACY_THRESHOLDS[int(np.argmax(train_accuracy))]
        test_accuracy, _, _ = rates(distances[test], same[test], np.array([threshold]))
        accuracies.append(test_accuracy[0])
        best.append(float(threshold))
        _, tpr, fpr = rates(distances[test], same[test], ACCURACY_THRESHOLDS)
        tprs.append(tpr)
        fprs.append(fpr)
        _, _, train_far = rates(distances[train], same[train], FAR_THRESHOLDS)
        val_threshold = threshold_at_far(train_far, FAR_THRESHOLDS, far_target)
        _, val, far = rates(distances[test], same[test], np.array([val_threshold]))
        vals.append(val[0])
        fars.append(far[0])
    tpr_mean, fpr_mean = np.mean(tprs, 0), np.mean(fprs, 0)
    return VerificationResult(
        accuracy=float(np.mean(accuracies)), accuracy_std=float(np.std(accuracies)),
        val=float(np.mean(vals)), val_std=float(np.std(vals)), far=float(np.mean(fars)), far_target=far_target,
        auc=float(auc(fpr_mean, tpr_mean)), eer=equal_error_rate(fpr_mean, tpr_mean),
        pairs=len(same), folds=len(fold_ids), best_thresholds=best,
        fpr=fpr_mean.tolist(), tpr=tpr_mean.tolist(),
    )


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """x where FPR = x and TPR = 1 - x on the (monotone) ROC curve."""
    order = np.argsort(fpr, kind="stable")
    fpr, tpr = fpr[order], tpr[order]
    gap = lambda x: 1.0 - x - np.interp(x, fpr, tpr)  # noqa: E731 - decreasing in x
    if gap(0.0) <= 0:
        return 0.0
    if gap(1.0) >= 0:
        return 1.0
    return float(brentq(gap, 0.0, 1.0))


def plot_roc(results: dict[str, VerificationResult], path: Path) -> None:
    """One ROC curve per labelled result (e.g. before and after training), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5))
    for label, result in results.items():
        axes.plot(result.fpr, result.tpr, label=f"{label}: acc {result.accuracy:.3f}, AUC {result.auc:.3f}")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
             title=f"verification ROC ({next(iter(results.values())).folds}-fold mean)")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
