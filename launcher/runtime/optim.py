"""Client optimizer and learning-rate schedule handed to ``deepspeed.initialize``.

DeepSpeed's own LAMB is a CUDA op, so every optimizer here is a plain PyTorch one that
runs on CPU and GPU alike (LAMB from timm, per REFERENCE.md §3).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from launcher.config.schema import OptimizerConfig, ScheduleConfig


def lr_factor(step: int, total_steps: int, schedule: ScheduleConfig) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    if schedule.decay == "constant":
        return 1.0
    if schedule.decay == "step":
        return schedule.gamma ** sum(step >= m for m in schedule.milestones)
    span = max(total_steps - schedule.warmup_steps, 1)
    progress = min((step - schedule.warmup_steps) / span, 1.0)
    if schedule.decay == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:  # linear
        shape = 1.0 - progress
    return schedule.min_lr_ratio + (1.0 - schedule.min_lr_ratio) * shape


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and conv kernels only; biases, norm scales and gains are not decayed."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay)
    if config.name == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    from timm.optim import Lamb

    # Gradient clipping belongs to DeepSpeed (deepspeed.gradient_clipping); timm's Lamb would
    # clip a second time by default.
    return Lamb(groups, lr=config.lr, betas=config.betas, eps=config.eps, max_grad_norm=None)


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    factor = functools.partial(lr_factor, total_steps=total_steps, schedule=schedule)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
