"""The contract between the engine and a task.

The engine owns the process group, DeepSpeed, backward, the optimizer step, checkpoints
and logging; a task owns its model, its data and its loss.  A new task is a new class
registered in ``launcher.tasks.TASKS``, never a new loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from launcher.dist import DistInfo


class BatchStream(Protocol):
    """An endless iterator of batches whose position can be saved and restored."""

    def __iter__(self) -> Iterator[Any]: ...

    def __next__(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]:
        """Opaque position stored in every checkpoint, per rank."""


class Task(Protocol):
    """What the engine needs from a task."""

    micro_batch_size: int
    """Samples per rank per forward pass (DeepSpeed's train_micro_batch_size_per_gpu)."""

    def build_model(self) -> nn.Module:
        """A fresh model; the engine seeds the RNG first so every rank builds the same one."""

    def train_batches(self, dist: DistInfo, position: dict[str, Any] | None) -> BatchStream:
        """This rank's batches, continuing from ``position`` (from ``state_dict``) if given."""

    def step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward one micro-batch: the scalar loss to back-propagate and stats to log."""

    def evaluate(self, model: nn.Module, dist: DistInfo, run_dir: Path) -> dict[str, float]:
        """Called on every rank together; returns the same metrics on every rank."""
