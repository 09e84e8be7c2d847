"""results.json and the small table printed after every evaluation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from shards.files import write_json_atomic


def write_results(path: Path, summary: dict[str, Any], evaluations: list[dict[str, Any]]) -> None:
    write_json_atomic(path, {**summary, "evaluations": evaluations}, indent=2)


def format_table(evaluations: list[dict[str, Any]]) -> str:
    """One row per evaluation, one column per metric."""
    if not evaluations:
        return "(no evaluations)"
    metrics: list[str] = []
    for evaluation in evaluations:
        metrics += [k for k in evaluation["metrics"] if k not in metrics]
    header = ["step", *metrics]
    rows = [[str(e["step"]), *(_fmt(e["metrics"].get(m)) for m in metrics)] for e in evaluations]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)) for r in [header, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)
