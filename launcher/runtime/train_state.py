"""Everything a resume restores besides DeepSpeed's own state, in one object per rank."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainState:
    step: int = 0
    """Optimizer steps completed."""
    nonfinite_skipped: int = 0
    """Micro-steps skipped on every rank because some rank's loss was not finite."""
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    """Every evaluation since step 0: {"step", "metrics"}."""
    best: dict[str, Any] | None = None
    """checkpoint.keep_best: {"metric", "mode", "value", "step", "checkpoint"}."""
    early_stop: dict[str, Any] | None = None
    """train.early_stop's memory: {"metric", "mode", "best_value", "best_step", "waited"}."""
    stopped_early: dict[str, Any] | None = None
    """Why training ended before train.steps, if it did."""
    reader: dict[str, Any] | None = None
    """This rank's reader position."""
    task: dict[str, Any] = field(default_factory=dict)
    """The task's own state (``Task.state_dict``)."""

    @property
    def last_eval_step(self) -> int:
        return self.evaluations[-1]["step"] if self.evaluations else -1

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = set(state) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"train state has unknown entries {sorted(unknown)} (a newer version's checkpoint?)")
        for name, value in state.items():
            setattr(self, name, value)
