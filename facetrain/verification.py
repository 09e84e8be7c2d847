"""The LFW verification protocol (REFERENCE.md §7.5; davidsandberg/facenet ``facenet.py`` and
insightface ``verification.py`` compute the same thing on a threshold grid), with exact thresholds.

Pairs carry their fold (LFW: 10 folds of 300 matched + 300 mismatched, from pairs.txt order),
so a pair dropped for a missing image never shifts the others' folds.  Distances are squared
Euclidean distances of unit embeddings (0..4); a pair is predicted "same" when d < t.

The references scan t over a fixed grid (every 0.01 on [0, 4]); an untrained model's distances can
span a few grid cells, which blurs every figure (issue #16).  Here the candidate thresholds come from
the data: a set of distances splits in as many ways as it has distinct values, plus one (t at the
smallest value accepts none; above the largest, all).  Each split is realised by any t in the gap
between two consecutive distinct values; the training folds cannot tell these apart, so we take the
midpoint, which favours neither side (at the ends: the smallest value, or just above the largest).

* accuracy: for each fold k, t*_k is the split of the other folds' distances with the most correct
  verdicts there (the first, i.e. smallest, on a tie, as the references' ``np.argmax`` over their grid);
  Acc_k is the accuracy of t*_k on fold k; report the mean and standard deviation over folds;
* VAL@FAR: on the other folds, the split of their mismatched distances that accepts the most of
  them while keeping FAR <= the target (1e-3).  FAR(t) is a step function, so the references'
  interpolation of a grid threshold has nothing left to interpolate: the split is exact, never above
  the target on the training folds, and its threshold is the gap's midpoint as above.  VAL_k and
  FAR_k are measured on fold k; with 300 mismatched pairs per LFW fold, FAR_k moves in steps of 1/300;
* ROC, AUC, EER on all pairs, exact: one point per distinct distance (scikit-learn's ``roc_curve`` with
  score -d); AUC is the trapezoid area under it (= ``roc_auc_score``: ties count half); EER is where
  FPR = 1 - TPR, linearly interpolated between the last ROC point before that line and the first on
  or past it;
* TAR@FAR (IJB style, REFERENCE.md §7.5) on all pairs at FAR 1e-3, 1e-4, 1e-5: the highest TPR among
  ROC points with FPR <= the target, reported at the lowest FPR giving that TPR ("FAR achieved").  A
  target needs at least 1/target mismatched pairs (one false accept must not exceed it); otherwise
  TAR and FAR are null, with the reason in ``tar_undefined``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

TAR_FAR_TARGETS = {"1e-3": 1e-3, "1e-4": 1e-4, "1e-5": 1e-5}


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
    tar_at_far: dict[str, float | None] = field(default_factory=dict)
    """FAR target (a key of TAR_FAR_TARGETS) -> TAR on all pairs; null where the pairs are too few."""
    far_achieved: dict[str, float | None] = field(default_factory=dict)
    """FAR target -> the FAR of the operating point that gives ``tar_at_far``."""
    tar_undefined: dict[str, str] = field(default_factory=dict)
    """FAR target -> why its TAR is null."""
    fpr: list[float] = field(default_factory=list, repr=False)
    tpr: list[float] = field(default_factory=list, repr=False)

    def metrics(self) -> dict[str, float | None]:
        """The scalar figures, for results.json and the printed table (None where undefined)."""
        scalars: dict[str, float | None] = {k: v for k, v in asdict(self).items() if isinstance(v, (int, float))}
        for label, tar in self.tar_at_far.items():
            scalars[f"tar_at_far_{label}"] = tar
            scalars[f"far_achieved_{label}"] = self.far_achieved[label]
        return scalars


def split_thresholds(sorted_distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct split of sorted distances by "d < t": its threshold and how many distances lie below."""
    last_of_value = np.r_[sorted_distances[1:] != sorted_distances[:-1], True]
    values = sorted_distances[last_of_value]
    below = np.r_[0, np.flatnonzero(last_of_value) + 1]
    # Between adjacent floats the midpoint rounds onto the lower one, which would not split there.
    midpoints = np.maximum(values[:-1] + (values[1:] - values[:-1]) / 2, np.nextafter(values[:-1], np.inf))
    return np.r_[values[0], midpoints, np.nextafter(values[-1], np.inf)], below


def best_accuracy_threshold(sorted_distances: np.ndarray, same: np.ndarray) -> float:
    thresholds, below = split_thresholds(sorted_distances)
    true_accepts = np.r_[0, np.cumsum(same)][below]
    # Correct verdicts = true accepts + mismatched pairs - false accepts; the mismatched count is the same for
    # every split, so the best split has the most true accepts less false accepts.
    gain = true_accepts - (below - true_accepts)
    return float(thresholds[np.argmax(gain)])


def threshold_at_far(sorted_mismatched: np.ndarray, target: float) -> float:
    """Accept as many mismatched distances as a FAR <= target allows."""
    thresholds, below = split_thresholds(sorted_mismatched)
    return float(thresholds[np.searchsorted(below / len(sorted_mismatched), target, side="right") - 1])


def share(hits: np.ndarray, pool: np.ndarray) -> float:
    """hits / pool for boolean masks; 0 for an empty pool (a test fold without one kind of pair)."""
    return float(hits.sum() / pool.sum()) if pool.any() else 0.0


def evaluate_pairs(distances: np.ndarray, same: np.ndarray, folds: np.ndarray,
                   far_target: float = 1e-3) -> VerificationResult:
    distances, same, folds = np.asarray(distances, float), np.asarray(same, bool), np.asarray(folds)
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise ValueError("the protocol needs at least 2 folds")
    if min(len(np.unique(folds[same])), len(np.unique(folds[~same]))) < 2:
        raise ValueError("matched and mismatched pairs must each lie in at least 2 folds")
    if not 0 < far_target < 1:
        raise ValueError(f"far_target must lie in (0, 1), got {far_target}")
    order = np.argsort(distances)
    distances, same, folds = distances[order], same[order], folds[order]
    accuracies, best, vals, fars = [], [], [], []
    for fold in fold_ids:
        train, test = folds != fold, folds == fold
        threshold = best_accuracy_threshold(distances[train], same[train])
        accuracies.append(np.mean((distances[test] < threshold) == same[test]))
        best.append(threshold)
        accepted = distances[test] < threshold_at_far(distances[train & ~same], far_target)
        vals.append(share(accepted & same[test], same[test]))
        fars.append(share(accepted & ~same[test], ~same[test]))
    return VerificationResult(
        accuracy=float(np.mean(accuracies)), accuracy_std=float(np.std(accuracies)),
        val=float(np.mean(vals)), val_std=float(np.std(vals)), far=float(np.mean(fars)), far_target=far_target,
        pairs=len(same), folds=len(fold_ids), best_thresholds=best, **exact_roc(distances, same),
    )


def exact_roc(sorted_distances: np.ndarray, same: np.ndarray) -> dict:
    """AUC, EER, TAR@FAR and the ROC's corner points, from every distinct split of all pairs."""
    _, below = split_thresholds(sorted_distances)
    true_accepts = np.r_[0, np.cumsum(same)][below]
    false_accepts = below - true_accepts
    positives, negatives = true_accepts[-1], false_accepts[-1]
    tpr, fpr = true_accepts / positives, false_accepts / negatives
    # Trapezoids in pair counts (integers): the one rounding is the final division.
    area = np.sum(np.diff(false_accepts) * (true_accepts[1:] + true_accepts[:-1])) / (2 * positives * negatives)
    gap = fpr + tpr - 1  # FPR - (1 - TPR): -1 at (0, 0), rising to 1 at (1, 1)
    cross = np.searchsorted(gap, 0)
    eer = fpr[cross - 1] - gap[cross - 1] / (gap[cross] - gap[cross - 1]) * (fpr[cross] - fpr[cross - 1])
    tar, far_achieved, undefined = {}, {}, {}
    for label, target in TAR_FAR_TARGETS.items():
        needed = round(1 / target)
        if negatives < needed:
            tar[label] = far_achieved[label] = None
            undefined[label] = f"needs at least {needed} mismatched pairs, has {negatives}"
            continue
        highest = np.searchsorted(fpr, target, side="right") - 1
        first = np.searchsorted(tpr, tpr[highest])  # the lowest FAR with that TAR
        tar[label], far_achieved[label] = float(tpr[first]), float(fpr[first])
    # Corners only, as roc_curve(drop_intermediate=True): points on a straight run add nothing to the curve.
    corner = np.ones(len(below), bool)
    corner[2:-1] = np.logical_or(np.diff(false_accepts[1:], 2), np.diff(true_accepts[1:], 2))
    return {"auc": float(area), "eer": float(eer), "tar_at_far": tar, "far_achieved": far_achieved,
            "tar_undefined": undefined, "fpr": fpr[corner].tolist(), "tpr": tpr[corner].tolist()}


def plot_roc(results: dict[str, VerificationResult], path: Path) -> None:
    """One ROC curve per labelled result (e.g. before and after training), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5))
    for label, result in results.items():  # the exact curve: straight lines between its corner points
        axes.plot(result.fpr, result.tpr, label=f"{label}: acc {result.accuracy:.3f}, AUC {result.auc:.3f}")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
             title="verification ROC (all pairs, exact)")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
