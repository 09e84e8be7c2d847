"""Choices made from evaluation metrics: which checkpoint is the best one (checkpoint.keep_best)
and when training stops early (train.early_stop).  Both keep their memory in the TrainState,
so a resumed run goes on with the same best checkpoint and the same patience left."""

from __future__ import annotations

import logging
from dataclasses import asdict

from launcher.config.schema import EarlyStopConfig, KeepBestConfig
from launcher.errors import JobError
from launcher.run_dir import RunDir
from launcher.runtime.train_state import TrainState

log = logging.getLogger(__name__)


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
        best = state.best
        if best and (config is None or (best["metric"], best["mode"]) != (config.metric, config.mode)):
            log.warning("checkpoint.keep_best changed since %s was the best (%s, %s): tracking starts again, and "
                        "that checkpoint is no longer spared", state.best["checkpoint"], state.best["metric"],
                        state.best["mode"])
            state.best = None

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
        memory = state.early_stop
        if memory and (config is None or (memory["metric"], memory["mode"]) != (config.metric, config.mode)):
            state.early_stop = None  # another metric: its patience starts afresh
        if state.stopped_early and (config is None or state.stopped_early["config"] != asdict(config)):
            log.warning("the early stop at step %d no longer applies (train.early_stop changed): training goes on",
                        state.stopped_early["step"])
            state.stopped_early = None

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """True if training should stop now (recorded in ``state.stopped_early``).  The loop hands
        every rank rank 0's metrics, so every rank decides the same."""
        c, state = self.config, self.state
        if c is None:
            return False
        value = metric_value(metrics, c.metric, "train.early_stop.metric")
        memory = state.early_stop
        if memory is None or better(value, memory["best_value"], c.mode, c.min_delta):
            memory = state.early_stop = {"metric": c.metric, "mode": c.mode, "best_value": value, "best_step": step,
                                         "waited": 0}
        else:
            memory["waited"] += 1
        if memory["waited"] < c.patience:
            return False
        state.stopped_early = {
            "step": step, "metric": c.metric, "best_value": memory["best_value"], "best_step": memory["best_step"],
            "reason": f"{c.metric} has not improved by more than {c.min_delta} on {memory['best_value']:.6g} "
                      f"(step {memory['best_step']}) for {c.patience} evaluation(s)",
            "config": asdict(c),
        }
        return True
