"""The contract between the engine and a task: everything the engine calls, and nothing else.

The engine owns the process group, DeepSpeed, backward, the optimizer step, checkpoints,
evaluation scheduling and logging; a task owns its model, its data, its loss and its metrics.
A new task is a new class registered in ``launcher.tasks.TASKS``, never a new loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from launcher.config.schema import TaskConfig
from launcher.runtime.dist import DistInfo


class BatchStream(Protocol):
    """A rank's endless batches, with a position that can be saved and restored.

    Nothing in it is collective: every rank ends its epochs at the same batch count, and the
    loop reduces what ``stats`` and ``epoch_coverage`` report over the ranks.
    """

    @property
    def epoch(self) -> int:
        """Epochs completed (an epoch is the same number of batches on every rank)."""

    def __iter__(self) -> Iterator[Any]: ...

    def __next__(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]:
        """Opaque position stored in every checkpoint, per rank."""

    def stats(self) -> dict[str, float]:
        """This rank's running counters (samples skipped as corrupt, truncated shards, ...), the
        same keys on every rank; the loop sums them over ranks."""

    def epoch_coverage(self) -> dict[str, torch.Tensor] | None:
        """Once per finished epoch: 0/1 tensors marking what this rank saw (identities, images);
        the loop takes their union over ranks.  None otherwise."""

    def close(self) -> None:
        """Release what the stream holds (worker processes) at the end of the run."""


class Task(Protocol):
    """What the engine needs from a task."""

    micro_batch_size: int
    """Samples per rank per forward pass (DeepSpeed's train_micro_batch_size_per_gpu)."""

    def __init__(self, config: TaskConfig, dist: DistInfo) -> None:
        """``config``: the job's ``task:`` section, as the config class ``launcher.tasks`` names."""

    def build_model(self) -> nn.Module:
        """A fresh model; the engine seeds the RNG first so every rank builds the same one."""

    def train_batches(self, position: dict[str, Any] | None) -> BatchStream:
        """This rank's batches, continuing from ``position`` (from ``state_dict``) if given."""

    def step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward one micro-batch: the scalar loss to back-propagate and statistics as scalar
        tensors on the device (the loop reduces them and reads them only when it logs); the same
        statistics at every step on every rank."""

    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        """Called on every rank together with the model in eval mode; rank 0's metrics are the
        evaluation's (the loop gives them to every rank; the others may return {}), and it may
        write pictures into ``out_dir``.  The task picks its grad mode (no_grad for embeddings;
        gradients for Grad-CAM or RISE)."""

    def summary(self) -> dict[str, Any]:
        """What results.json says about the task's data, for results to cite: the shards, the
        splits and how the build made them."""

    def state_dict(self) -> dict[str, Any]:
        """What the task must carry across a resume (e.g. the curves of earlier evaluations)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
