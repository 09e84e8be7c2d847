"""Clinical classification metrics with bootstrap confidence intervals, and per-patient aggregation.

What the papers report (soft-attention brain tumour: accuracy, micro/macro precision and recall, one-vs-rest
ROC AUC per class; PatchConvNet IDC: patch accuracy) plus what medical-imaging users expect (REFERENCE.md
§11.5, MONAI's ROCAUCMetric and ConfusionMatrixMetric, torchmetrics' 15-bin calibration error).

Definitions (also written into every result under ``definitions``):

* prediction: the arg-max class of each row of ``probabilities`` (the first one on a tie);
* per-class precision/recall/F1: a ratio whose denominator is zero (precision of a class never predicted,
  recall of a class absent from the labels) is null (scikit-learn ``zero_division=np.nan``);
* macro averages run over the classes present in the evaluation labels, like balanced accuracy, with
  ``zero_division=0``: a present class the model never predicts counts precision 0, it is not skipped;
  micro averages run over every class and equal the accuracy for single-label data;
* one-vs-rest AUC of a class is undefined (null, reason in ``auc_undefined``) without both a positive
  and a negative case; macro AUC is the mean over the defined classes; binary: the positive class is
  ``class_names[1]`` (label 1) and ``auc`` is ``roc_auc_score(labels, probabilities[:, 1])``;
* confidence intervals: percentile bootstrap (2.5 %, 97.5 %) over resamples of the cases with
  replacement; each resample is scored with the definitions above, a metric undefined in a resample
  (AUC of a class the resample lacks) skips that resample, ``bootstrap.resamples_used`` counts the rest.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

DEFINITIONS = {
    "prediction": "arg-max of each probability row (first on ties)",
    "positive_class": "binary only: class_names[1] (label 1); auc = roc_auc_score(labels, probabilities[:, 1])",
    "per_class": "precision/recall/F1 with zero_division=nan: a 0/0 ratio is null",
    "macro": "mean over the classes present in the labels, zero_division=0 (never predicted = precision 0)",
    "micro": "pooled over all classes (= accuracy for single-label data)",
    "auc_macro": "mean one-vs-rest ROC AUC over the classes with both positive and negative cases",
    "ece": "top-label ECE: sum_b |B_b|/N * |accuracy(B_b) - mean confidence(B_b)|, bins (k/M, (k+1)/M]",
    "confidence_interval": "95% percentile bootstrap over cases resampled with replacement",
}
# Per-patient label rules for aggregate_by_patient.
LABEL_RULES = ("unanimous", "any_positive")


@dataclass
class ClinicalMetrics:
    class_names: list[str]
    positive_class: str | None
    """Binary only: the class whose probability is scored by ``auc`` and ``sensitivity``."""
    num_cases: int
    scalars: dict[str, float | None]
    confidence_intervals: dict[str, list[float] | None]
    per_class: dict[str, dict[str, Any]]
    """Per class: support, precision, recall, f1, auc and their intervals under ``ci``."""
    auc_undefined: dict[str, str]
    """Class name -> why its one-vs-rest AUC is null."""
    notes: list[str]
    """What the numbers leave out, in words: absent classes, AUCs averaged over fewer classes, resamples skipped."""
    confusion_matrix: list[list[int]]
    """Rows are the true classes, columns the predicted ones."""
    reliability: dict[str, list]
    """Per confidence bin: lower and upper edge, count, mean confidence, accuracy (null when empty)."""
    bootstrap: dict[str, Any]
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))
    roc_curves: dict[str, dict[str, list[float]]] = field(default_factory=dict, repr=False)

    def metrics(self) -> dict[str, float | None]:
        """The headline scalars, for an evaluation's metrics dict."""
        return dict(self.scalars)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only; NaN and infinities become null."""
        return _plain(asdict(self))


def clinical_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    bootstrap: int = 1000,
    seed: int = 0,
    ece_bins: int = 15,
) -> ClinicalMetrics:
    """The metrics of the module docstring for ``labels`` (N,) in [0, C) and softmax ``probabilities``
    (N, C), with ``bootstrap`` resamples (0: no intervals) drawn from ``seed``."""
    labels_N, probabilities_NC = _checked(labels, probabilities, class_names)
    num_classes = len(class_names)
    predicted_N = probabilities_NC.argmax(1)
    every_class, present = list(range(num_classes)), np.unique(labels_N).tolist()
    point: dict[str, float] = {"accuracy": accuracy_score(labels_N, predicted_N)}
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected, stated in DEFINITIONS
        warnings.simplefilter("ignore", UserWarning)
        point["balanced_accuracy"] = balanced_accuracy_score(labels_N, predicted_N)
    for average, classes in (("macro", present), ("micro", every_class)):
        p, r, f, _ = precision_recall_fscore_support(
            labels_N, predicted_N, labels=classes, average=average, zero_division=0.0
        )
        point |= {f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f}
    precision_C, recall_C, f1_C, support_C = precision_recall_fscore_support(
        labels_N, predicted_N, labels=every_class, average=None, zero_division=np.nan
    )
    auc_C, auc_undefined, roc_curves = _one_vs_rest_auc(labels_N, probabilities_NC, class_names)
    if num_classes == 2:
        point["auc"] = auc_C[1]
    else:
        point["auc_macro"] = np.nanmean(auc_C) if np.isfinite(auc_C).any() else np.nan
    with warnings.catch_warnings():  # undefined when labels and predictions are one same class: a note below
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        point["kappa"] = cohen_kappa_score(labels_N, predicted_N, labels=every_class)
    reliability = reliability_bins(labels_N, probabilities_NC, ece_bins)
    point["ece"] = expected_calibration_error(reliability, len(labels_N))
    if num_classes == 2:
        point |= {"sensitivity": recall_C[1], "specificity": recall_C[0], "ppv": precision_C[1], "npv": precision_C[0]}

    per_class_values = {"precision": precision_C, "recall": recall_C, "f1": f1_C, "auc": auc_C}
    intervals, used = _bootstrap(labels_N, probabilities_NC, ece_bins, bootstrap, seed, list(point))
    used = {f"auc/{class_names[int(k[4:])]}" if k.startswith("auc/") else k: n for k, n in used.items()}
    per_class = {
        name: {
            "support": int(support_C[c]),
            **{k: v[c] for k, v in per_class_values.items()},
            "ci": {k: intervals.get(f"{k}/{c}") for k in per_class_values},
        }
        for c, name in enumerate(class_names)
    }
    absent = [name for c, name in enumerate(class_names) if c not in present]
    notes = [f"{name}: no case in the evaluation labels, its recall is undefined" for name in absent]
    if absent:
        notes.append(f"macro precision/recall/F1 and balanced accuracy average the {len(present)} classes present")
    if num_classes > 2 and auc_undefined:
        defined = num_classes - len(auc_undefined)
        notes.append(f"auc_macro: mean over the {defined} of {num_classes} classes whose AUC is defined")
    if not np.isfinite(point["kappa"]):
        notes.append("kappa: undefined, the labels and the predictions are all one class (chance agreement 1)")
    notes += [
        f"{name}: confidence interval from {n} of {bootstrap} resamples (the others lack a class)"
        for name, n in used.items()
        if 0 < n < bootstrap
    ]
    return ClinicalMetrics(
        class_names=list(class_names),
        positive_class=class_names[1] if num_classes == 2 else None,
        num_cases=len(labels_N),
        scalars=_plain(point),
        confidence_intervals={k: intervals.get(k) for k in point},
        per_class=_plain(per_class),
        auc_undefined=auc_undefined,
        notes=notes,
        confusion_matrix=confusion_matrix(labels_N, predicted_N, labels=every_class).tolist(),
        reliability=_plain(reliability),
        roc_curves=roc_curves,
        bootstrap={"resamples": bootstrap, "seed": seed, "level": 0.95, "resamples_used": used},
    )


def _one_vs_rest_auc(labels_N, probabilities_NC, class_names):
    """Per class: AUC (NaN where undefined), the reason where undefined, the ROC curve where defined."""
    auc_C, undefined, curves = np.full(len(class_names), np.nan), {}, {}
    for c, name in enumerate(class_names):
        positive_N = labels_N == c
        if positive_N.all() or not positive_N.any():
            undefined[name] = f"no {'negative' if positive_N.all() else 'positive'} case in the evaluation split"
            continue
        auc_C[c] = roc_auc_score(positive_N, probabilities_NC[:, c])
        fpr, tpr, _ = roc_curve(positive_N, probabilities_NC[:, c])
        curves[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    return auc_C, undefined, curves


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray, num_bins: int = 15) -> dict[str, list]:
    """Top-label reliability diagram data, equal-width bins (k/M, (k+1)/M] (a confidence of 0 joins bin 0)."""
    confidence_N = probabilities.max(1)
    correct_N = probabilities.argmax(1) == labels
    bin_N = _confidence_bins(confidence_N, num_bins)
    count_M = np.bincount(bin_N, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence_M = np.bincount(bin_N, confidence_N, num_bins) / count_M
        accuracy_M = np.bincount(bin_N, correct_N, num_bins) / count_M
    edges = np.arange(num_bins + 1) / num_bins
    return {
        "lower": edges[:-1].tolist(),
        "upper": edges[1:].tolist(),
        "count": count_M.tolist(),
        "confidence": confidence_M.tolist(),
        "accuracy": accuracy_M.tolist(),
    }


def expected_calibration_error(reliability: dict[str, list], num_cases: int) -> float:
    """ECE = sum over bins of (bin count / N) * |bin accuracy - bin mean confidence| (Guo et al. 2017;
    torchmetrics MulticlassCalibrationError, norm="l1"): the share of cases times the calibration gap."""
    count, accuracy, confidence = (np.asarray(reliability[k], float) for k in ("count", "accuracy", "confidence"))
    filled = count > 0
    return float(np.sum(count[filled] * np.abs(accuracy[filled] - confidence[filled])) / num_cases)


def resampled_metrics(
    labels: np.ndarray, probabilities: np.ndarray, indices_BN: np.ndarray, ece_bins: int = 15
) -> dict[str, np.ndarray]:
    """Every metric of ``clinical_metrics`` on each resample ``labels[indices_BN[b]]``, vectorised over b
    (NaN where undefined); per-class metrics as ``name/class_index``. ``auc_macro`` is NaN in a resample
    that lacks a class whose AUC the full labels define. ``indices_BN = arange(N)[None]`` gives the point
    estimates."""
    num_resamples, num_cases = indices_BN.shape
    num_classes = probabilities.shape[1]
    offset_B1 = np.arange(num_resamples)[:, None]
    predicted_N = probabilities.argmax(1)
    code_BN = (labels * num_classes + predicted_N)[indices_BN] + offset_B1 * num_classes**2
    cm_BCC = (
        np.bincount(code_BN.ravel(), minlength=num_resamples * num_classes**2)
        .reshape(num_resamples, num_classes, num_classes)
        .astype(float)
    )
    true_BC, predicted_BC, hit_BC = cm_BCC.sum(2), cm_BCC.sum(1), np.diagonal(cm_BCC, axis1=1, axis2=2)
    present_BC = true_BC > 0
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        precision_BC, recall_BC, f1_BC = hit_BC / predicted_BC, hit_BC / true_BC, 2 * hit_BC / (true_BC + predicted_BC)
        out["accuracy"] = hit_BC.sum(1) / num_cases
        out["balanced_accuracy"] = np.nanmean(recall_BC, 1)
        for name, per_class_BC in (("precision", precision_BC), ("recall", recall_BC), ("f1", f1_BC)):
            out[f"{name}_macro"] = np.nan_to_num(per_class_BC).sum(1, where=present_BC) / present_BC.sum(1)
            out[f"{name}_micro"] = out["accuracy"]
        chance_B = (true_BC * predicted_BC).sum(1) / num_cases**2
        out["kappa"] = (out["accuracy"] - chance_B) / (1 - chance_B)
    draws_BN = np.bincount((indices_BN + offset_B1 * num_cases).ravel(), minlength=num_resamples * num_cases)
    draws_BN = draws_BN.reshape(num_resamples, num_cases)
    auc_BC = np.stack([_weighted_auc(labels == c, probabilities[:, c], draws_BN) for c in range(num_classes)], 1)
    defined = [c for c in range(num_classes) if 0 < np.sum(labels == c) < len(labels)]
    if num_classes == 2:
        out["auc"] = auc_BC[:, 1]
        out |= {
            "sensitivity": recall_BC[:, 1],
            "specificity": recall_BC[:, 0],
            "ppv": precision_BC[:, 1],
            "npv": precision_BC[:, 0],
        }
    else:
        out["auc_macro"] = auc_BC[:, defined].mean(1) if defined else np.full(num_resamples, np.nan)
    confidence_N = probabilities.max(1)
    bin_BN = _confidence_bins(confidence_N, ece_bins)[indices_BN] + offset_B1 * ece_bins
    gap_BM = np.bincount(
        bin_BN.ravel(), (predicted_N == labels)[indices_BN].ravel(), num_resamples * ece_bins
    ) - np.bincount(bin_BN.ravel(), confidence_N[indices_BN].ravel(), num_resamples * ece_bins)
    out["ece"] = np.abs(gap_BM.reshape(num_resamples, ece_bins)).sum(1) / num_cases
    for name, per_class_BC in (("precision", precision_BC), ("recall", recall_BC), ("f1", f1_BC), ("auc", auc_BC)):
        out |= {f"{name}/{c}": per_class_BC[:, c] for c in range(num_classes)}
    return out


def aggregate_by_patient(
    patient_ids: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    rule: str = "mean",
    label_rule: str = "unanimous",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One case per patient, patients in sorted id order: ``(patient_labels, patient_probabilities,
    patient_ids)``.

    ``rule``: "mean" averages the probability rows of the patient's slices/patches; "max" (binary only)
    takes the highest positive-class probability (one suspicious patch flags the patient).
    ``label_rule``: "unanimous" (default) requires every case of a patient to carry the same label, and
    a disagreement is an error naming the patients: a figshare tumour patient has one tumour type, so a
    disagreement is a data error to report, not to average away. "any_positive" (binary only) labels a
    patient positive when any of its cases is; it is the only patient label the IDC patches define (a
    patient's slide holds both IDC− and IDC+ patches, REFERENCE.md §6b), and must be asked for. The
    slides come from IDC patients, so most (perhaps all) patients are positive under it and the
    patient-level AUC may be undefined; the PatchConvNet paper reports patch-level accuracy."""
    if rule not in ("mean", "max") or label_rule not in LABEL_RULES:
        raise ValueError(
            f"rule must be 'mean' or 'max' and label_rule one of {LABEL_RULES}, got {rule!r}, {label_rule!r}"
        )
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=float)
    binary = probabilities.ndim == 2 and probabilities.shape[1] == 2
    if not binary and (rule == "max" or label_rule == "any_positive"):
        raise ValueError(
            f"rule='max' and label_rule='any_positive' need binary probabilities (N, 2), got {probabilities.shape}"
        )
    if not len(patient_ids) == len(labels) == len(probabilities) or len(labels) == 0:
        raise ValueError(f"{len(patient_ids)} patient ids, {len(labels)} labels, {len(probabilities)} rows")
    patients, patient_N = np.unique(np.asarray(patient_ids), return_inverse=True)
    num_patients = len(patients)
    lowest_P, highest_P = np.full(num_patients, labels.max()), np.full(num_patients, labels.min())
    np.minimum.at(lowest_P, patient_N, labels)
    np.maximum.at(highest_P, patient_N, labels)
    if label_rule == "unanimous" and (lowest_P != highest_P).any():
        mixed = np.flatnonzero(lowest_P != highest_P)
        shown = ", ".join(f"{patients[p]} (labels {sorted(set(labels[patient_N == p].tolist()))})" for p in mixed[:5])
        raise ValueError(
            f"{len(mixed)} patient(s) have cases with different labels: {shown}"
            f"{' …' if len(mixed) > 5 else ''}; for IDC-style data pass label_rule='any_positive'"
        )
    if rule == "mean":
        patient_probabilities = np.zeros((num_patients, probabilities.shape[1]))
        np.add.at(patient_probabilities, patient_N, probabilities)
        patient_probabilities /= np.bincount(patient_N, minlength=num_patients)[:, None]
    else:
        positive_P = np.zeros(num_patients)
        np.maximum.at(positive_P, patient_N, probabilities[:, 1])
        patient_probabilities = np.stack([1 - positive_P, positive_P], 1)
    return highest_P, patient_probabilities, patients


def _checked(labels, probabilities, class_names) -> tuple[np.ndarray, np.ndarray]:
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=float)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), len(class_names)) or len(labels) == 0:
        raise ValueError(
            f"probabilities must be (N, C) = ({len(labels)}, {len(class_names)}) for {len(labels)} "
            f"labels and classes {class_names}, got {probabilities.shape}; a binary model's "
            "p(positive) becomes np.stack([1 - p, p], 1)"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= len(class_names):
        raise ValueError(
            f"labels must be integers in [0, {len(class_names)}), got {labels.dtype} "
            f"from {labels.min()} to {labels.max()}"
        )
    sums = probabilities.sum(1)
    if not np.isfinite(probabilities).all() or probabilities.min() < 0 or np.abs(sums - 1).max() > 1e-3:
        raise ValueError(
            "each probability row must be finite, non-negative and sum to 1 (got row sums "
            f"{sums.min():.4g}..{sums.max():.4g}): pass softmax(logits), not logits"
        )
    return labels.astype(np.int64), probabilities


def _confidence_bins(confidence_N: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin k holds edges[k] < confidence <= edges[k + 1]."""
    edges = np.arange(num_bins + 1) / num_bins
    return np.clip(np.searchsorted(edges, confidence_N, side="left") - 1, 0, num_bins - 1)


def _weighted_auc(positive_N: np.ndarray, score_N: np.ndarray, weight_BN: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each resample given how often it draws each case: per positive draw, the
    negative draws below its score plus half those tied with it (as roc_auc_score counts ties)."""
    order = np.argsort(score_N, kind="stable")
    sorted_score, positive = score_N[order], positive_N[order]
    tie_start = np.searchsorted(sorted_score, sorted_score, side="left")[positive]
    tie_end = np.searchsorted(sorted_score, sorted_score, side="right")[positive]
    weight_BN = weight_BN[:, order]
    negatives_below_BN = np.zeros((len(weight_BN), len(score_N) + 1), np.int64)  # column i: negatives in [0, i)
    np.cumsum(weight_BN * ~positive, 1, out=negatives_below_BN[:, 1:])
    pair_score_B = (weight_BN[:, positive] * (negatives_below_BN[:, tie_start] + negatives_below_BN[:, tie_end])).sum(1)
    pairs_B = weight_BN[:, positive].sum(1) * negatives_below_BN[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs_B > 0, pair_score_B / (2 * pairs_B), np.nan)


def _bootstrap(labels_N, probabilities_NC, ece_bins, num_resamples, seed, scalar_names):
    """Percentile intervals of every scalar and per-class metric, in chunks of about 2M drawn cases."""
    if num_resamples <= 0:
        return {}, {}
    rng, num_cases = np.random.default_rng(seed), len(labels_N)
    chunk = max(1, 2_000_000 // num_cases)
    parts = [
        resampled_metrics(labels_N, probabilities_NC, rng.integers(0, num_cases, (size, num_cases)), ece_bins)
        for size in np.diff(np.r_[np.arange(0, num_resamples, chunk), num_resamples])
    ]
    intervals, used = {}, {}
    for name in parts[0]:
        values = np.concatenate([part[name] for part in parts])
        values = values[np.isfinite(values)]
        if name in scalar_names or name.startswith("auc/"):
            used[name] = len(values)
        intervals[name] = np.percentile(values, [2.5, 97.5]).tolist() if len(values) else None
    return intervals, used


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, bool, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value
