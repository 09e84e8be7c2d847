"""The learning-rate schedule is a pure function of the step."""

import math

import pytest
import torch

from launcher.optim import build_optimizer, build_scheduler, lr_factor, parameter_groups
from launcher.schema import OptimizerConfig, ScheduleConfig


def test_warmup_is_linear_to_peak():
    schedule = ScheduleConfig(warmup_steps=4, decay="constant")
    assert [lr_factor(s, 100, schedule) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_ends_at_min_ratio():
    schedule = ScheduleConfig(warmup_steps=10, decay="cosine", min_lr_ratio=0.1)
    assert lr_factor(10, 110, schedule) == pytest.approx(1.0)
    assert lr_factor(60, 110, schedule) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(110, 110, schedule) == pytest.approx(0.1)
    assert lr_factor(500, 110, schedule) == pytest.approx(0.1)


def test_linear_and_step_decay():
    linear = ScheduleConfig(decay="linear")
    assert lr_factor(25, 100, linear) == pytest.approx(0.75)
    step = ScheduleConfig(decay="step", milestones=(10, 20), gamma=0.5)
    assert [lr_factor(s, 100, step) for s in (0, 9, 10, 19, 20, 99)] == [1, 1, 0.5, 0.5, 0.25, 0.25]


def test_scheduler_follows_the_pure_function():
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(model, OptimizerConfig(name="sgd", lr=0.2))
    schedule = ScheduleConfig(warmup_steps=3, decay="cosine")
    scheduler = build_scheduler(optimizer, schedule, total_steps=20)
    for step in range(20):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * lr_factor(step, 20, schedule))
        optimizer.step()
        scheduler.step()
    assert math.isclose(optimizer.param_groups[0]["lr"], 0.0, abs_tol=1e-12)


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4), torch.nn.Linear(4, 2))
    decay, no_decay = parameter_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and len(decay["params"]) == 2
    assert all(p.ndim == 1 for p in no_decay["params"]) and len(no_decay["params"]) == 4


@pytest.mark.parametrize("name", ["adamw", "sgd", "lamb"])
def test_every_optimizer_takes_a_step_on_cpu(name):
    model = torch.nn.Linear(4, 1)
    optimizer = build_optimizer(model, OptimizerConfig(name=name, lr=0.1, weight_decay=0.01))
    before = model.weight.detach().clone()
    model(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step()
    assert not torch.equal(before, model.weight)
