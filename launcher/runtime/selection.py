"""Choices made from evaluation metrics: which checkpoint is the best one (checkpoint.keep_best)
and when training stops early (train.early_stop).  Both keep their memory in the TrainState,
so a resumed run goes on with the same best checkpoint and the same patience left."""

from __future__ import annotations

from launcher.config.schema import EarlyStopConfig, KeepBestConfig
from launcher.errors import JobError
from launcher.run_dir import RunDir
from launcher.runtime.train_state import TrainState


def metric_value(metrics: dict[str, float], name: str, key: str) -> float:
    if name not in metrics:
        raise JobError(f"{key}: the task's evaluation reports no metric {name!r}; it reports "
                       f"{', '.join(sorted(metrics))}")
    return float(metrics[name])


def better(value: float, reference: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if reference is None:
        return True
    return value > reference + min_delta if mode == "max" else value < reference - min_delta


class BestTracker:
    def __init__(self, config: KeepBestConfig | None, state: TrainState):
        self.config, self.state = config, state

    @property
    def tag(self) -> str | None:
        """The best checkpoint's tag, which pruning spares."""
        return self.state.best["checkpoint"] if self.state.best else None

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """True if this evaluation is the best so far (a checkpoint at ``step`` must be saved)."""
        if self.config is None:
            return False
        value = metric_value(metrics, self.config.metric, "checkpoint.keep_best.metric")
        previous = self.state.best["value"] if self.state.best else None
        if not better(value, previous, self.config.mode):
            return False
        self.state.best = {"metric": self.config.metric, "mode": self.config.mode, "value": value, "step": step,
                           "checkpoint": RunDir.tag_for(step)}
        return True


class EarlyStopper:
    def __init__(self, config: EarlyStopConfig | None, state: TrainState):
        self.config, self.state = config, state

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """True if training should stop now (recorded in ``state.stopped_early``).  The loop hands
        every rank rank 0's metrics, so every rank decides the same."""
        c, state = self.config, self.state
        if c is None:
            return False
        value = metric_value(metrics, c.metric, "train.early_stop.metric")
        if better(value, state.early_stop_best, c.mode, c.min_delta):
            state.early_stop_best, state.early_stop_waited = value, 0
        else:
            state.early_stop_waited += 1
        if state.early_stop_waited < c.patience:
            return False
        best_step = next(e["step"] for e in reversed(state.evaluations)
                         if metric_value(e["metrics"], c.metric, "train.early_stop.metric") == state.early_stop_best)
        state.stopped_early = {
            "step": step, "metric": c.metric, "best_value": state.early_stop_best, "best_step": best_step,
            "reason": f"{c.metric} has not improved by more than {c.min_delta} on {state.early_stop_best:.6g} "
                      f"(step {best_step}) for {c.patience} evaluation(s)",
        }
        return True
