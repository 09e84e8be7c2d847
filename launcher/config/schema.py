"""The job config: one frozen dataclass per component, assembled into a ``JobConfig``.

The ``task:`` section's schema depends on ``task.name``: the loader resolves that field to the
task's own config class (``launcher.tasks``), so a misspelt task option fails exactly like a
misspelt engine option.  Each component later receives only its own section.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from launcher.config.loader import ConfigError, apply_override, build, read_yaml_mapping


@dataclass(frozen=True)
class TaskConfig:
    """Base of every task's config section."""

    name: str
    """Task name, a key of ``launcher.tasks.TASKS``."""

    def check_inputs(self) -> None:
        """The task's data checked where it can be without starting a process (files present,
        splits, enough of them): ``launch`` calls it before it spawns anything.  Raises
        ManifestError or ValueError with one line naming the file."""


@dataclass(frozen=True)
class EarlyStopConfig:
    """Stop when an evaluation metric has not improved for a while (all ranks agree)."""

    metric: str
    """A metric the task's evaluation reports, e.g. verification_auc."""
    mode: Literal["max", "min"] = "max"
    patience: int = 3
    """Evaluations in a row without an improvement of more than min_delta before stopping."""
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.patience < 1 or self.min_delta < 0:
            raise ValueError("train.early_stop: patience must be at least 1 and min_delta >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """How long to train and how often to report."""

    steps: int
    """Optimizer steps in the whole run (a resumed run stops at the same step)."""
    seed: int = 0
    """Seed for model initialisation and every random stream derived from it."""
    log_every: int = 10
    """Log loss and statistics every this many optimizer steps."""
    eval_every: int = 0
    """Evaluate every this many optimizer steps; 0 evaluates only at the end."""
    eval_at_start: bool = False
    """Also evaluate before the first step (a 'before training' row in the results)."""
    max_nonfinite_in_a_row: int = 5
    """Stop with an error after this many consecutive non-finite losses (each is skipped)."""
    init_from: str = ""
    """Start from another run's model weights (its run_dir, or one checkpoint folder in it): fresh
    optimizer, schedule and step, for a second training stage. Ignored when resuming."""
    init_new_keys: tuple[str, ...] = ()
    """Prefixes of model keys that init_from's checkpoint may lack (a new branch or head)."""
    init_skip_keys: tuple[str, ...] = ()
    """Prefixes of init_from's checkpoint keys to leave out (a head this stage no longer has)."""
    early_stop: EarlyStopConfig | None = None

    def __post_init__(self) -> None:
        if min(self.steps, self.log_every, self.max_nonfinite_in_a_row) < 1:
            raise ValueError("train.steps, log_every and max_nonfinite_in_a_row must be at least 1")
        if self.eval_every < 0:
            raise ValueError("train.eval_every must be >= 0 (0: only at the end)")


@dataclass(frozen=True)
class OptimizerConfig:
    """The client optimizer handed to DeepSpeed (its own LAMB is CUDA-only)."""

    name: Literal["adamw", "sgd", "lamb"] = "adamw"
    lr: float = 1e-3
    """Peak learning rate (reached after warm-up)."""
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam/LAMB moment coefficients."""
    momentum: float = 0.9
    """SGD momentum."""
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("lr and eps must be > 0, weight_decay >= 0, momentum in [0, 1)")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule as a function of the optimizer step."""

    warmup_steps: int = 0
    """Linear warm-up from 0 to the peak over this many steps."""
    decay: Literal["constant", "cosine", "linear", "step"] = "cosine"
    """Shape after warm-up; cosine and linear end at ``min_lr_ratio`` x peak at train.steps."""
    min_lr_ratio: float = 0.0
    milestones: tuple[int, ...] = ()
    """Steps at which ``decay: step`` multiplies the rate by ``gamma``."""
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1 or self.gamma <= 0:
            raise ValueError("warmup_steps must be >= 0, min_lr_ratio in [0, 1], gamma > 0")
        if list(self.milestones) != sorted(set(self.milestones)) or any(m < 0 for m in self.milestones):
            raise ValueError(f"milestones must be increasing steps >= 0, got {list(self.milestones)}")


@dataclass(frozen=True)
class DeepSpeedConfig:
    """The subset of DeepSpeed's JSON config this framework sets, always explicitly."""

    zero_stage: Literal[0, 1, 2, 3] = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """fp16 needs CUDA; bf16 runs on recent GPUs and on CPU."""
    gradient_clipping: float = 1.0
    """Global grad-norm clip; 0 disables. Set explicitly: DeepSpeed's default changed in 0.19.3."""
    gradient_accumulation_steps: int = 1
    wall_clock_breakdown: bool = False

    def __post_init__(self) -> None:
        if self.gradient_accumulation_steps < 1:
            raise ValueError("deepspeed.gradient_accumulation_steps must be at least 1")
        if self.gradient_clipping < 0:
            raise ValueError("deepspeed.gradient_clipping must be >= 0")


@dataclass(frozen=True)
class KeepBestConfig:
    """Which evaluation metric picks the best checkpoint."""

    metric: str
    """A metric the task's evaluation reports, e.g. verification_auc."""
    mode: Literal["max", "min"] = "max"


@dataclass(frozen=True)
class CheckpointConfig:
    """When checkpoints are written and how many are kept."""

    every_steps: int = 0
    """Save every this many optimizer steps; a final checkpoint is always written."""
    keep_last: int = 3
    """Keep the newest N complete checkpoints; 0 keeps all."""
    keep_best: KeepBestConfig | None = None
    """Also keep the checkpoint of the best evaluation (saved at that step), recorded in results.json."""

    def __post_init__(self) -> None:
        if self.every_steps < 0 or self.keep_last < 0:
            raise ValueError("checkpoint.every_steps and keep_last must be >= 0")


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus exporter every rank runs (launcher/monitoring/metrics.py)."""

    enabled: bool = True
    port: int = 9400
    """This rank serves on port + local rank; 0: any free port. A busy port falls back to a free one
    (with a warning); the file-SD targets always hold the real ports."""
    address: str = "127.0.0.1"
    """Bind address: loopback by default, "0.0.0.0" for a cluster's Prometheus."""
    file_sd: str = ""
    """Prometheus file-SD targets written by rank 0; empty: <run_dir>/../prometheus_targets/<run name>.json."""
    pushgateway: str = ""
    """Pushgateway URL: each rank pushes its final metrics at the end of the run; empty: no push."""
    job_name: str = ""
    """The job label; empty: the run directory's name."""

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"metrics.port must be a port number, got {self.port}")


def _task_schema(raw: Any, source: str) -> type:
    """The config class of the task a ``task:`` section names."""
    from launcher.tasks import task_config_class

    if raw is None or (isinstance(raw, dict) and "name" not in raw):
        raise ConfigError(f"{source}: task.name: required key is missing (in the file, or --set task.name=NAME)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: task: expected a mapping with the task's name and options, got "
                          f"{type(raw).__name__} {raw!r}")
    if not isinstance(raw["name"], str):
        raise ConfigError(f"{source}: task.name: expected str, got {type(raw['name']).__name__} {raw['name']!r}")
    return task_config_class(raw["name"], source=source)


@dataclass(frozen=True)
class JobConfig:
    """Everything a run needs; ``task`` is the named task's own config class."""

    run_dir: str
    """Directory for checkpoints, the resolved config, results.json and plots."""
    train: TrainConfig
    task: TaskConfig = field(metadata={"schema": _task_schema})
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


def load_job_config(path: str | Path, overrides: list[str] = ()) -> JobConfig:
    """Load and validate a job config; raises ``ConfigError`` naming file and key."""
    raw = read_yaml_mapping(path)
    first = [item for item in overrides if item.startswith(("task=", "task.name="))]
    for item in first + [item for item in overrides if item not in first]:  # the task's name decides its keys
        apply_override(raw, item, JobConfig, source=str(path))
    if "task" not in raw:
        raise ConfigError(f"{path}: task.name: required key is missing")
    return build(JobConfig, raw, source=str(path))


def load_job_config_or_report(path: str | Path, overrides: list[str] = ()) -> JobConfig | None:
    """For entry points: the job config, or None after printing the error on stderr."""
    try:
        return load_job_config(path, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
