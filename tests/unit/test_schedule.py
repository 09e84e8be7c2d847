"""The learning-rate schedule is a pure function of the step."""

import math

import pytest
import torch

from launcher.config.schema import OptimizerConfig, ScheduleConfig
from launcher.runtime.optim import build_optimizer, build_scheduler, lr_factor, parameter_groups


def test_warmup_is_linear_to_peak():
    schedule = ScheduleConfig(warmup_steps=4, decay="constant")
    assert [lr_factor(s, 100, schedule) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_ends_at_min_ratio():
    schedule = ScheduleConfig(warmup_steps=10, decay="cosine", min_lr_ratio=0.1)
    assert lr_factor(10, 110, schedule) == pytest.approx(1.0)
    assert lr_factor(35, 110, schedule) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
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


def test_linear_decay_runs_from_peak_to_the_min_ratio():
    schedule = ScheduleConfig(warmup_steps=10, decay="linear", min_lr_ratio=0.2)
    assert [lr_factor(s, 110, schedule) for s in (10, 35, 60, 110, 500)] == pytest.approx([1.0, 0.8, 0.6, 0.2, 0.2])


def test_decay_right_after_warmup_ends_at_the_min_ratio_one_step_later():
    """train.steps == warmup_steps leaves no decay span: the peak once, then the floor, no division by 0."""
    for decay in ("cosine", "linear"):
        schedule = ScheduleConfig(warmup_steps=5, decay=decay, min_lr_ratio=0.1)
        assert [lr_factor(s, 5, schedule) for s in (4, 5, 6, 7)] == pytest.approx([1.0, 1.0, 0.1, 0.1])


def test_frozen_parameters_are_left_to_no_group():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[0].requires_grad_(False)
    decay, no_decay = parameter_groups(model, 0.05)
    assert decay["params"] == [model[1].weight] and no_decay["params"] == [model[1].bias]


def reference_steps(name, config, weight, bias, grads):
    """The update rules of torch's SGD and AdamW and of timm's Lamb in float64, written out per parameter
    (the weight decayed, the bias not)."""
    params = {"weight": (weight.clone(), config.weight_decay), "bias": (bias.clone(), 0.0)}
    state = {key: (torch.zeros_like(p), torch.zeros_like(p)) for key, (p, _) in params.items()}
    beta1, beta2 = config.betas
    for t, step_grads in enumerate(grads, start=1):
        for key, (p, decay) in params.items():
            g, (m, v) = step_grads[key], state[key]
            if name == "sgd":  # coupled decay, momentum buffer starting at the first gradient
                g = g + decay * p
                m = g if t == 1 else config.momentum * m + g
                p = p - config.lr * m
            else:
                m = beta1 * m + (1 - beta1) * g
                v = beta2 * v + (1 - beta2) * g * g
                update = (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + config.eps)
                if name == "adamw":  # decoupled decay
                    p = p * (1 - config.lr * decay) - config.lr * update
                else:  # lamb (timm): decay added to the update, layer-wise trust ratio on decayed tensors
                    if decay:
                        update = update + decay * p
                        update = update * (p.norm() / update.norm())
                    p = p - config.lr * update
            state[key] = (m, v)
            params[key] = (p, decay)
    return params["weight"][0], params["bias"][0]


@pytest.mark.parametrize("name", ["adamw", "sgd", "lamb"])
def test_optimizers_follow_their_update_rules_without_gradient_clipping(name):
    """Gradients of norm ~100, then ~0.01: clipping the global norm to 1 (timm's Lamb default) would change
    the weight of the large steps in the moments; DeepSpeed clips, the optimizer must not."""
    config = OptimizerConfig(name=name, lr=0.05, weight_decay=0.1, betas=(0.8, 0.95), momentum=0.5, eps=1e-3)
    model = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        model.weight *= 10  # LAMB's trust ratio ||w|| / ||update|| above 1
    weight, bias = model.weight.detach().clone(), model.bias.detach().clone()
    generator = torch.Generator().manual_seed(0)
    grads = [{"weight": torch.randn(2, 3, generator=generator, dtype=torch.float64) * scale,
              "bias": torch.randn(2, generator=generator, dtype=torch.float64) * scale}
             for scale in (100.0, 80.0, 0.01, 0.02, 0.01)]
    optimizer = build_optimizer(model, config)
    for step_grads in grads:
        model.weight.grad, model.bias.grad = step_grads["weight"].clone(), step_grads["bias"].clone()
        optimizer.step()
    expected_weight, expected_bias = reference_steps(name, config, weight, bias, grads)
    torch.testing.assert_close(model.weight.detach(), expected_weight, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(model.bias.detach(), expected_bias, rtol=1e-10, atol=1e-12)
