"""The DeepSpeed seam: the JSON config DeepSpeed wants, built from typed sections."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from launcher.config.schema import DeepSpeedConfig, OptimizerConfig, ScheduleConfig
from launcher.errors import JobError
from launcher.runtime.dist import DistInfo
from launcher.runtime.optim import build_optimizer, build_scheduler

if TYPE_CHECKING:  # importing deepspeed probes the accelerators: only once a process group starts
    from deepspeed import DeepSpeedEngine

# DeepSpeed prints its own progress every `steps_per_print` steps; the loop logs instead.
_NEVER = 2**62


def deepspeed_json(config: DeepSpeedConfig, micro_batch_size: int, world_size: int) -> dict[str, Any]:
    """DeepSpeed's config dict. Every value that has a surprising default is set explicitly."""
    gas = config.gradient_accumulation_steps
    return {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gas,
        "train_batch_size": micro_batch_size * gas * world_size,
        "gradient_clipping": config.gradient_clipping,
        "zero_optimization": {"stage": config.zero_stage},
        "bf16": {"enabled": config.precision == "bf16"},
        "fp16": {"enabled": config.precision == "fp16"},
        # The client optimizers (SGD, LAMB) are outside DeepSpeed's tested list for ZeRO.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": _NEVER,
        "wall_clock_breakdown": config.wall_clock_breakdown,
    }


def compute_dtype(config: DeepSpeedConfig) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]


def build_engine(model: nn.Module, deepspeed_config: DeepSpeedConfig, optimizer_config: OptimizerConfig,
                 schedule: ScheduleConfig, total_steps: int, micro_batch_size: int,
                 dist: DistInfo) -> DeepSpeedEngine:
    """Wrap ``model`` in a DeepSpeed engine with our optimizer and schedule."""
    import deepspeed

    if deepspeed_config.precision == "fp16" and dist.device.type != "cuda":
        raise JobError("deepspeed.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    optimizer = build_optimizer(model, optimizer_config)
    scheduler = build_scheduler(optimizer, schedule, total_steps)
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=deepspeed_json(deepspeed_config, micro_batch_size, dist.world_size),
    )
    return engine
