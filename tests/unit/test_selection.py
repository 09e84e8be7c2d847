"""Best checkpoint and early stopping, as decisions over a sequence of evaluations."""

import pytest

from launcher.config.schema import EarlyStopConfig, KeepBestConfig
from launcher.errors import JobError
from launcher.runtime.selection import BestTracker, EarlyStopper
from launcher.runtime.train_state import TrainState


def feed(state: TrainState, tracker, values: list[float], metric: str = "auc") -> list[bool]:
    decisions = []
    for step, value in enumerate(values):
        metrics = {metric: value, "other": 0.0}
        state.evaluations.append({"step": step * 10, "metrics": metrics})
        decisions.append(tracker.update(step * 10, metrics))
    return decisions


@pytest.mark.parametrize(("mode", "values", "best_step"), [("max", [0.5, 0.7, 0.7, 0.6], 10),
                                                           ("min", [0.5, 0.3, 0.3, 0.4], 10)])
def test_the_best_is_the_first_evaluation_at_the_extreme(mode, values, best_step):
    state = TrainState()
    decisions = feed(state, BestTracker(KeepBestConfig("auc", mode), state), values)
    assert decisions == [True, True, False, False]  # a tie is not an improvement
    assert state.best == {"metric": "auc", "mode": mode, "value": values[1], "step": best_step,
                          "checkpoint": "step00000010"}


def test_without_keep_best_nothing_is_tracked():
    state = TrainState()
    tracker = BestTracker(None, state)
    assert feed(state, tracker, [0.1, 0.9]) == [False, False] and tracker.tag is None


def test_early_stop_waits_patience_evaluations_beyond_min_delta():
    state = TrainState()
    stopper = EarlyStopper(EarlyStopConfig("auc", "max", patience=2, min_delta=0.05), state)
    # 0.50 best; 0.53 is within min_delta (waited 1); 0.60 improves (reset); 0.62, 0.61: waited 2 -> stop
    assert feed(state, stopper, [0.50, 0.53, 0.60, 0.62, 0.61]) == [False, False, False, False, True]
    assert state.stopped_early["step"] == 40 and state.stopped_early["best_step"] == 20
    assert state.stopped_early["best_value"] == 0.60
    reason = state.stopped_early["reason"]
    assert reason == "auc has not improved by more than 0.05 on 0.6 (step 20) for 2 evaluation(s)"


def test_patience_carries_across_a_resume():
    state = TrainState()
    stopper = EarlyStopper(EarlyStopConfig("loss", "min", patience=2), state)
    assert feed(state, stopper, [1.0, 1.2], metric="loss") == [False, False]
    resumed = TrainState()
    resumed.load_state_dict(state.state_dict())  # what a checkpoint carries
    again = EarlyStopper(EarlyStopConfig("loss", "min", patience=2), resumed)
    assert feed(resumed, again, [1.1], metric="loss") == [True]


def test_a_metric_the_task_does_not_report_names_the_ones_it_does():
    state = TrainState()
    with pytest.raises(JobError, match=r"checkpoint\.keep_best\.metric: .* no metric 'acc'; it reports auc, other"):
        BestTracker(KeepBestConfig("acc"), state).update(0, {"auc": 0.5, "other": 1.0})
    with pytest.raises(JobError, match=r"train\.early_stop\.metric: .* no metric 'acc'"):
        EarlyStopper(EarlyStopConfig("acc"), state).update(0, {"auc": 0.5})


def test_a_train_state_from_a_newer_version_is_refused():
    with pytest.raises(ValueError, match=r"unknown entries \['future'\]"):
        TrainState().load_state_dict({"step": 3, "future": 1})


def test_a_changed_metric_or_mode_starts_the_memory_afresh():
    state = TrainState()
    feed(state, BestTracker(KeepBestConfig("auc", "max"), state), [0.9])
    BestTracker(KeepBestConfig("auc", "max"), state)  # the same config on resume: kept
    assert state.best["value"] == 0.9
    tracker = BestTracker(KeepBestConfig("acc", "max"), state)  # another metric: 0.9 was an AUC
    assert state.best is None and tracker.tag is None  # and step 0's checkpoint is no longer spared

    stopper = EarlyStopper(EarlyStopConfig("auc", "max", patience=1), state)
    assert feed(state, stopper, [0.5, 0.4]) == [False, True]
    EarlyStopper(EarlyStopConfig("auc", "max", patience=1), state)
    assert state.stopped_early is not None  # resumed with the same rule: stays stopped
    EarlyStopper(EarlyStopConfig("auc", "max", patience=3), state)
    assert state.stopped_early is None  # a more patient rule: training goes on
    assert state.early_stop["waited"] == 1  # with the patience already spent
    EarlyStopper(EarlyStopConfig("loss", "min", patience=3), state)
    assert state.early_stop is None
