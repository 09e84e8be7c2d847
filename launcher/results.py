"""results.json and the small table printed after every evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def load_evaluations(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    """Evaluations recorded by an earlier run of this job, up to the step it resumes from."""
    if not path.is_file():
        return []
    return [e for e in json.loads(path.read_text())["evaluations"] if e["step"] <= up_to_step]


def write_results(path: Path, summary: dict[str, Any], evaluations: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**summary, "evaluations": evaluations}, indent=2, sort_keys=False))
    tmp.replace(path)


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
