"""Clinical metrics against scikit-learn and direct loops; per-patient aggregation; the figures and table."""

import json
import warnings
from collections import defaultdict

import numpy as np
import pytest
from matplotlib.image import imread
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

from medtrain.metrics import aggregate_by_patient, clinical_metrics, resampled_metrics
from medtrain.plots import format_table, write_plots

TUMOUR = ["meningioma", "glioma", "pituitary"]
FOUR = ["a", "b", "c", "d"]


def classifier(seed, num_cases, priors, separation=1.5, decimals=None, favour_common=False):
    """Labels drawn from ``priors`` and softmax probabilities of a moderately good model; with ``decimals``
    the probabilities are rounded (then renormalised), which makes tied scores; ``favour_common`` adds the
    log prior to the logits, so that common classes are recalled better than rare ones."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(priors), num_cases, p=priors)
    logits = rng.normal(size=(num_cases, len(priors)))
    logits[np.arange(num_cases), labels] += separation
    if favour_common:
        logits += np.log(priors)
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if decimals is not None:
        probabilities = np.round(probabilities, decimals)
        probabilities /= probabilities.sum(1, keepdims=True)
    return labels, probabilities


def sklearn_reference(labels, probabilities, present=None):
    """Every scalar of clinical_metrics, from scikit-learn, with the definitions of the module docstring."""
    num_classes = probabilities.shape[1]
    predicted = probabilities.argmax(1)
    present = sorted(set(labels.tolist())) if present is None else present
    every = list(range(num_classes))
    expected = {"accuracy": accuracy_score(labels, predicted)}
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true" where a class is missing
        warnings.simplefilter("ignore", UserWarning)
        expected["balanced_accuracy"] = balanced_accuracy_score(labels, predicted)
    for average, classes in (("macro", present), ("micro", every)):
        p, r, f, _ = precision_recall_fscore_support(
            labels, predicted, labels=classes, average=average, zero_division=0
        )
        expected |= {f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f}
    expected["kappa"] = cohen_kappa_score(labels, predicted)
    return expected


def test_multiclass_metrics_equal_scikit_learn():
    labels, probabilities = classifier(0, 600, [0.5, 0.3, 0.15, 0.05], separation=1.2, favour_common=True)
    result = clinical_metrics(labels, probabilities, FOUR, bootstrap=50)
    predicted = probabilities.argmax(1)
    for name, value in sklearn_reference(labels, probabilities).items():
        assert result.scalars[name] == pytest.approx(value, abs=1e-12), name
    # Imbalance keeps the averages apart, so swapping them (or micro for macro AUC) cannot pass.
    assert abs(result.scalars["precision_macro"] - result.scalars["precision_micro"]) > 0.02
    assert abs(result.scalars["recall_macro"] - result.scalars["recall_micro"]) > 0.02
    assert result.scalars["auc_macro"] == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr"))
    micro_auc = roc_auc_score(np.eye(4)[labels], probabilities, average="micro")
    assert abs(result.scalars["auc_macro"] - micro_auc) > 1e-3
    per_class = precision_recall_fscore_support(labels, predicted, average=None)
    for c, name in enumerate(FOUR):
        got = result.per_class[name]
        assert [got["precision"], got["recall"], got["f1"], got["support"]] == pytest.approx(
            [column[c] for column in per_class]
        )
        assert got["auc"] == pytest.approx(roc_auc_score(labels == c, probabilities[:, c]))
    matrix = np.array(result.confusion_matrix)
    np.testing.assert_array_equal(matrix, confusion_matrix(labels, predicted))
    assert (matrix != matrix.T).any()
    np.testing.assert_array_equal(matrix.sum(1), np.bincount(labels, minlength=4))  # rows are the truth
    assert result.positive_class is None and result.auc_undefined == {} and result.notes == []


def test_binary_imbalanced_scores_the_positive_class():
    labels, probabilities = classifier(1, 2000, [0.95, 0.05], separation=1.0)
    result = clinical_metrics(labels, probabilities, ["IDC-", "IDC+"], bootstrap=50)
    predicted = probabilities.argmax(1)
    assert result.positive_class == "IDC+"
    assert "auc_macro" not in result.scalars
    assert result.scalars["auc"] == pytest.approx(roc_auc_score(labels, probabilities[:, 1]))
    assert result.scalars["sensitivity"] == pytest.approx(recall_score(labels, predicted, pos_label=1))
    assert result.scalars["specificity"] == pytest.approx(recall_score(labels, predicted, pos_label=0))
    assert result.scalars["ppv"] == pytest.approx(precision_score(labels, predicted, pos_label=1))
    assert result.scalars["npv"] == pytest.approx(precision_score(labels, predicted, pos_label=0))
    for name, value in sklearn_reference(labels, probabilities).items():
        assert result.scalars[name] == pytest.approx(value, abs=1e-12), name
    assert result.scalars["f1_macro"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert result.scalars["f1_macro"] < result.scalars["f1_micro"] - 0.1


def test_a_class_missing_from_the_labels_is_reported_not_a_crash():
    labels, probabilities = classifier(2, 300, [0.5, 0.5, 0.0])
    predicted = probabilities.argmax(1)
    assert (predicted == 2).any()  # the model still predicts the absent class sometimes
    result = clinical_metrics(labels, probabilities, TUMOUR, bootstrap=100)
    assert result.auc_undefined == {"pituitary": "no positive case in the evaluation split"}
    assert result.per_class["pituitary"]["auc"] is None and result.per_class["pituitary"]["recall"] is None
    assert result.per_class["pituitary"]["precision"] == 0.0  # predicted, never right
    defined = [roc_auc_score(labels == c, probabilities[:, c]) for c in (0, 1)]
    assert result.scalars["auc_macro"] == pytest.approx(np.mean(defined))
    for name, value in sklearn_reference(labels, probabilities, present=[0, 1]).items():
        assert result.scalars[name] == pytest.approx(value, abs=1e-12), name
    assert result.scalars["recall_macro"] == pytest.approx(result.scalars["balanced_accuracy"])
    assert any("auc_macro: mean over the 2 of 3 classes" in note for note in result.notes)
    assert any("pituitary: no case in the evaluation labels" in note for note in result.notes)
    assert "AUC undefined for pituitary: no positive case in the evaluation split" in format_table(result)
    written = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert written["per_class"]["pituitary"]["auc"] is None
    assert written["auc_undefined"] == {"pituitary": "no positive case in the evaluation split"}

    only_positive = clinical_metrics(np.ones(20, int), np.tile([0.3, 0.7], (20, 1)), ["IDC-", "IDC+"], bootstrap=10)
    assert only_positive.scalars["auc"] is None and only_positive.confidence_intervals["auc"] is None
    assert only_positive.auc_undefined["IDC+"] == "no negative case in the evaluation split"
    assert only_positive.scalars["kappa"] is None and any(n.startswith("kappa: undefined") for n in only_positive.notes)
    assert json.dumps(only_positive.to_json(), allow_nan=False)


def test_resamples_that_lack_a_class_are_skipped_for_auc_and_counted():
    labels, probabilities = classifier(3, 60, [0.48, 0.48, 0.04])
    assert 1 <= np.sum(labels == 2) <= 4
    result = clinical_metrics(labels, probabilities, TUMOUR, bootstrap=400)
    used = result.bootstrap["resamples_used"]
    assert 0 < used["auc_macro"] < 400 and used["auc/pituitary"] == used["auc_macro"]
    assert used["auc/glioma"] == used["accuracy"] == 400
    assert result.confidence_intervals["auc_macro"] is not None
    assert any(f"auc_macro: confidence interval from {used['auc_macro']} of 400" in n for n in result.notes)


@pytest.mark.parametrize(("priors", "decimals"), [([0.4, 0.3, 0.2, 0.1], 2), ([0.7, 0.3], 1)])
def test_vectorised_resamples_equal_scikit_learn_on_each_resample(priors, decimals):
    labels, probabilities = classifier(4, 400, priors, decimals=decimals)
    rng = np.random.default_rng(0)
    without_last_class = rng.choice(np.flatnonzero(labels != len(priors) - 1), len(labels))
    indices = np.vstack([np.arange(len(labels)), rng.integers(0, len(labels), (3, len(labels))), without_last_class])
    resampled = resampled_metrics(labels, probabilities, indices, ece_bins=10)
    for b, rows in enumerate(indices):
        reference = clinical_metrics(
            labels[rows], probabilities[rows], [str(c) for c in range(len(priors))], bootstrap=0, ece_bins=10
        )
        for name, value in reference.scalars.items():
            if b == len(indices) - 1 and name == "auc_macro":  # a class lacks its AUC: the resample is skipped
                assert np.isnan(resampled[name][b])
                continue
            expected = np.nan if value is None else value
            assert resampled[name][b] == pytest.approx(expected, abs=1e-12, nan_ok=True), (name, b)
        for c, per_class in enumerate(reference.per_class.values()):
            for key in ("precision", "recall", "f1", "auc"):
                expected = np.nan if per_class[key] is None else per_class[key]
                assert resampled[f"{key}/{c}"][b] == pytest.approx(expected, abs=1e-12, nan_ok=True), (key, c, b)
        if len(priors) > 2 and b < len(indices) - 1:
            macro_auc = roc_auc_score(labels[rows], probabilities[rows], multi_class="ovr")
            assert resampled["auc_macro"][b] == pytest.approx(macro_auc, abs=1e-12)
        assert resampled["precision_micro"][b] == pytest.approx(
            precision_score(labels[rows], probabilities[rows].argmax(1), average="micro"), abs=1e-12
        )


def test_expected_calibration_error_against_a_direct_loop():
    labels, probabilities = classifier(5, 500, [0.3, 0.3, 0.4], separation=2.0)
    probabilities[:20] = [0.6, 0.2, 0.2]  # confidences exactly on a bin edge (9/15) belong to the lower bin
    result = clinical_metrics(labels, probabilities, TUMOUR, bootstrap=0, ece_bins=15)
    confidence, correct = probabilities.max(1), probabilities.argmax(1) == labels
    ece, counts = 0.0, []
    for k in range(15):
        members = [i for i in range(len(labels)) if k / 15 < confidence[i] <= (k + 1) / 15]
        counts.append(len(members))
        if members:
            gap = abs(np.mean([float(correct[i]) for i in members]) - np.mean([confidence[i] for i in members]))
            ece += len(members) / len(labels) * gap
    assert result.reliability["count"] == counts
    assert counts[8] >= 20
    assert result.scalars["ece"] == pytest.approx(ece, abs=1e-12)
    filled = [k for k in range(15) if counts[k]]
    assert all(result.reliability["accuracy"][k] is None for k in range(15) if k not in filled)
    assert result.scalars["ece"] > 0.01


def test_bootstrap_intervals_contain_the_estimate_narrow_with_data_and_repeat_with_the_seed():
    small = clinical_metrics(*classifier(6, 400, [0.5, 0.3, 0.2]), TUMOUR, bootstrap=300, seed=1)
    large = clinical_metrics(*classifier(6, 4000, [0.5, 0.3, 0.2]), TUMOUR, bootstrap=300, seed=1)
    for name, value in small.scalars.items():
        low, high = small.confidence_intervals[name]
        if name != "ece":  # ECE is biased upwards under resampling; its interval may sit above the estimate
            assert low <= value <= high, name
        width = lambda result, key=name: np.diff(result.confidence_intervals[key])[0]  # noqa: E731
        assert width(large) < 0.6 * width(small), name
    # The 2.5th and 97.5th percentiles of the resampled values (one chunk: drawn as rng.integers(0, N, (B, N))).
    labels, probabilities = classifier(6, 400, [0.5, 0.3, 0.2])
    drawn = np.random.default_rng(1).integers(0, 400, (300, 400))
    for name, values in resampled_metrics(labels, probabilities, drawn).items():
        if name in small.scalars:
            assert small.confidence_intervals[name] == pytest.approx(np.percentile(values, [2.5, 97.5])), name
    again = clinical_metrics(*classifier(6, 400, [0.5, 0.3, 0.2]), TUMOUR, bootstrap=300, seed=1)
    other = clinical_metrics(*classifier(6, 400, [0.5, 0.3, 0.2]), TUMOUR, bootstrap=300, seed=2)
    assert again.confidence_intervals == small.confidence_intervals
    assert other.confidence_intervals != small.confidence_intervals


def test_aggregate_by_patient_against_a_dict_loop():
    rng = np.random.default_rng(7)
    patients = np.array([f"P{p:03d}" for p in rng.integers(0, 40, 500)])
    patient_label = {p: int(rng.integers(0, 3)) for p in np.unique(patients)}
    labels = np.array([patient_label[p] for p in patients])
    probabilities = rng.dirichlet(np.ones(3), 500)
    got_labels, got_probabilities, got_ids = aggregate_by_patient(patients, labels, probabilities)
    rows = defaultdict(list)
    for patient, row in zip(patients, probabilities, strict=True):
        rows[patient].append(row)
    assert got_ids.tolist() == sorted(rows)
    for i, patient in enumerate(got_ids):
        np.testing.assert_allclose(got_probabilities[i], np.mean(rows[patient], 0), rtol=1e-12)
        assert got_labels[i] == patient_label[patient]

    labels[np.flatnonzero(patients == got_ids[3])[0]] = (patient_label[got_ids[3]] + 1) % 3
    with pytest.raises(ValueError, match=f"1 patient.*{got_ids[3]} \\(labels"):
        aggregate_by_patient(patients, labels, probabilities)
    with pytest.raises(ValueError, match="binary"):
        aggregate_by_patient(patients, labels, probabilities, rule="max")


def test_binary_patients_any_positive_label_and_max_rule():
    rng = np.random.default_rng(8)
    patients = rng.integers(0, 30, 400)
    labels = (rng.random(400) < 0.2).astype(int)  # IDC: a patient has patches of both classes
    positive = rng.random(400)
    probabilities = np.stack([1 - positive, positive], 1)
    with pytest.raises(ValueError, match="label_rule='any_positive'"):
        aggregate_by_patient(patients, labels, probabilities)
    got_labels, got_probabilities, got_ids = aggregate_by_patient(
        patients, labels, probabilities, rule="max", label_rule="any_positive"
    )
    for i, patient in enumerate(got_ids):
        mine = patients == patient
        assert got_labels[i] == int(labels[mine].any())
        assert got_probabilities[i].tolist() == pytest.approx([1 - positive[mine].max(), positive[mine].max()])


def test_the_figures_are_written_and_show_something(tmp_path):
    labels, probabilities = classifier(9, 300, [0.25, 0.45, 0.3], separation=1.8)
    result = clinical_metrics(labels, probabilities, TUMOUR, bootstrap=50)
    paths = write_plots(result, tmp_path / "plots")
    assert set(paths) == {"roc", "confusion_matrix", "reliability"}
    for path in paths.values():
        assert path.stat().st_size > 20_000, path
        pixels = imread(path)[..., :3]
        assert pixels.shape[0] > 400 and pixels.shape[1] > 400
        assert pixels.std() > 0.1, path  # not blank
        assert (pixels.std(axis=(0, 1)) > 0.05).sum() >= 2 or pixels.std() > 0.2, path  # colour, not one grey


def test_table_and_json_and_bad_inputs():
    labels, probabilities = classifier(10, 200, [0.7, 0.3])
    result = clinical_metrics(labels, probabilities, ["IDC-", "IDC+"], bootstrap=100)
    table = format_table(result)
    accuracy = result.scalars["accuracy"]
    low, high = result.confidence_intervals["accuracy"]
    assert f"accuracy           {accuracy:.4f}  [{low:.4f}, {high:.4f}]" in table
    assert "positive class: IDC+" in table and "100 resamples, seed 0" in table
    assert json.loads(json.dumps(result.to_json(), allow_nan=False))["scalars"]["accuracy"] == accuracy
    with pytest.raises(ValueError, match="softmax"):
        clinical_metrics(labels, np.log(probabilities), ["IDC-", "IDC+"])
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        clinical_metrics(labels, probabilities[:, 1], ["IDC-", "IDC+"])
    with pytest.raises(ValueError, match="labels must be integers"):
        clinical_metrics(labels + 1, probabilities, ["IDC-", "IDC+"])
