"""How a ``ClinicalMetrics`` result is shown: ROC, confusion-matrix and reliability PNGs, and the printed table.

Figures are built on ``matplotlib.figure.Figure`` and saved through Agg, without pyplot: no global figure
state, no backend switch, nothing to close.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from medtrain.metrics import ClinicalMetrics

DPI = 120


def write_plots(result: ClinicalMetrics, out_dir: Path) -> dict[str, Path]:
    """The three figures as ``roc.png``, ``confusion_matrix.png`` and ``reliability.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.png" for name in ("roc", "confusion_matrix", "reliability")}
    plot_roc_curves(result, paths["roc"])
    plot_confusion_matrix(result, paths["confusion_matrix"])
    plot_reliability_diagram(result, paths["reliability"])
    return paths


def plot_roc_curves(result: ClinicalMetrics, path: Path) -> None:
    """One-vs-rest ROC per class with its AUC (binary: the positive class only), and for more classes
    the macro-average curve (mean TPR over a common FPR grid) labelled with the macro AUC."""
    figure = Figure(figsize=(5.5, 5))
    axes = figure.subplots()
    curves = result.roc_curves
    if result.positive_class is not None:
        curves = {k: v for k, v in curves.items() if k == result.positive_class}
    for name, curve in curves.items():
        axes.plot(curve["fpr"], curve["tpr"], linewidth=1.5, label=f"{name}: AUC {_with_interval(result, name)}")
    if result.positive_class is None and curves:
        grid = np.linspace(0, 1, 201)
        mean_tpr = np.mean([np.interp(grid, c["fpr"], c["tpr"]) for c in curves.values()], 0)
        label = f"macro average: AUC {_with_interval(result, 'auc_macro')}"
        axes.plot(grid, mean_tpr, color="black", linestyle="--", linewidth=1.5, label=label)
    for name, reason in result.auc_undefined.items():
        axes.plot([], [], " ", label=f"{name}: AUC undefined ({reason})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    title = f"ROC, {result.num_cases} cases"
    if result.positive_class is not None:
        title += f" (positive class: {result.positive_class})"
    else:
        title += " (one-vs-rest)"
    axes.set(
        xlabel="false positive rate (1 - specificity)",
        ylabel="true positive rate (sensitivity)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=title,
    )
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)


def plot_confusion_matrix(result: ClinicalMetrics, path: Path) -> None:
    """Counts beside row-normalised percentages (each true class's row sums to 100 %)."""
    counts_CC = np.asarray(result.confusion_matrix, float)
    support_C1 = counts_CC.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        percent_CC = 100 * counts_CC / support_C1
    names = result.class_names
    size = max(4.0, 1.0 + 0.9 * len(names))
    figure = Figure(figsize=(2 * size + 1, size))
    for axes, values, title, text in zip(
        figure.subplots(1, 2),
        (counts_CC, percent_CC),
        ("counts", "% of each true class (row)"),
        ("{:.0f}", "{:.1f}%"),
        strict=True,
    ):
        image = axes.imshow(np.nan_to_num(values), cmap="Blues", vmin=0, vmax=100 if "%" in text else None)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        top = np.nanmax(values) if np.isfinite(values).any() else 1
        for (row, column), value in np.ndenumerate(values):
            label = "–" if np.isnan(value) else text.format(value)
            colour = "white" if np.isfinite(value) and value > 0.6 * top else "black"
            axes.text(column, row, label, ha="center", va="center", color=colour, fontsize=9)
        ticks = range(len(names))
        axes.set_xticks(ticks, names, rotation=30, ha="right")
        axes.set_yticks(ticks, [f"{n} ({int(s)})" for n, s in zip(names, support_C1[:, 0], strict=True)])
        axes.set(xlabel="predicted class", ylabel="true class (cases)", title=title)
    figure.suptitle(f"confusion matrix, {result.num_cases} cases, accuracy {_with_interval(result, 'accuracy')}")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)


def plot_reliability_diagram(result: ClinicalMetrics, path: Path) -> None:
    """Accuracy per top-label confidence bin against the diagonal, the gap to each bin's mean confidence,
    and underneath how many cases fall in each bin."""
    bins = {k: np.array(v, dtype=float) for k, v in result.reliability.items()}  # None -> nan
    width = bins["upper"] - bins["lower"]
    filled = bins["count"] > 0
    figure = Figure(figsize=(5.5, 6))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lower, accuracy, confidence = bins["lower"][filled], bins["accuracy"][filled], bins["confidence"][filled]
    top.bar(
        lower,
        accuracy,
        width=width[filled],
        align="edge",
        color="tab:blue",
        alpha=0.75,
        edgecolor="black",
        linewidth=0.6,
        label="accuracy in bin",
    )
    # The gap lies inside the bar when a bin is under-confident: hatch only, so the bar shows through.
    top.bar(
        lower,
        confidence - accuracy,
        bottom=accuracy,
        width=width[filled],
        align="edge",
        fill=False,
        edgecolor="tab:red",
        hatch="////",
        linewidth=0,
        label="gap to mean confidence",
    )
    top.hlines(confidence, lower, lower + width[filled], color="tab:red", linewidth=2, label="mean confidence in bin")
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    top.set(
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"reliability (top label), ECE {_with_interval(result, 'ece')}, {len(width)} bins",
    )
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(bins["lower"], bins["count"], width=width, align="edge", color="grey", edgecolor="black", linewidth=0.6)
    bottom.set(xlabel="confidence (highest class probability)", ylabel="cases")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)


def format_table(result: ClinicalMetrics) -> str:
    """Metric | value | 95% CI: the headline scalars, then (more than two classes) each class's AUC and recall;
    then the case count, the positive class, the bootstrap and the notes."""
    rows = [("metric", "value", "95% CI")]
    for name, value in result.scalars.items():
        rows.append((name, _number(value), _interval(result.confidence_intervals.get(name))))
    for name, per_class in result.per_class.items() if result.positive_class is None else ():
        for key in ("auc", "recall"):  # binary: already in the scalars as auc, sensitivity, specificity
            rows.append((f"{key} {name}", _number(per_class[key]), _interval(per_class["ci"][key])))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{row[0].ljust(widths[0])}  {row[1].rjust(widths[1])}  {row[2]}" for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    footer = f"{result.num_cases} cases"
    if result.positive_class is not None:
        footer += f"; positive class: {result.positive_class}"
    resamples, seed = result.bootstrap["resamples"], result.bootstrap["seed"]
    if resamples > 0:
        footer += f"; 95% CI: percentile bootstrap, {resamples} resamples, seed {seed}"
    lines.append(footer)
    lines += [f"AUC undefined for {name}: {reason}" for name, reason in result.auc_undefined.items()]
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _interval(interval: list[float] | None) -> str:
    return "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def _with_interval(result: ClinicalMetrics, name: str) -> str:
    """A scalar's value and interval, or a class's AUC and interval when ``name`` is a class."""
    if name in result.per_class:
        value, interval = result.per_class[name]["auc"], result.per_class[name]["ci"]["auc"]
    else:
        value, interval = result.scalars.get(name), result.confidence_intervals.get(name)
    if value is None:
        return "undefined"
    return f"{value:.3f}" + ("" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]")
