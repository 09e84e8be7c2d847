"""A test task: the demo task, but one rank's loss turns NaN at chosen micro-steps."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facetrain.identity_task import IdentityClassificationConfig, IdentityClassificationTask


@dataclass(frozen=True)
class NanInjectingConfig(IdentityClassificationConfig):
    nan_rank: int = 1
    nan_from: int = 10
    """First micro-step (0-based) whose loss is NaN on ``nan_rank``."""
    nan_count: int = 2
    """How many consecutive micro-steps are NaN."""


class NanInjectingTask(IdentityClassificationTask):
    Config = NanInjectingConfig

    def train_batches(self, dist, position):
        self.rank, self.calls = dist.rank, 0
        return super().train_batches(dist, position)

    def step(self, model, batch):
        loss, stats = super().step(model, batch)
        c = self.config
        if self.rank == c.nan_rank and c.nan_from <= self.calls < c.nan_from + c.nan_count:
            loss = loss * torch.tensor(float("nan"))
        self.calls += 1
        return loss, stats
