"""A test task: the face task, but one rank's loss turns NaN at chosen micro-steps."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facetrain.config import FaceTripletConfig
from facetrain.face_task import FaceTripletTask


@dataclass(frozen=True)
class NanInjectingConfig(FaceTripletConfig):
    nan_rank: int = 1
    nan_from: int = 10
    """First micro-step (0-based) whose loss is NaN on ``nan_rank``."""
    nan_count: int = 2
    """How many consecutive micro-steps are NaN."""


class NanInjectingTask(FaceTripletTask):
    def __init__(self, config: NanInjectingConfig, dist):
        super().__init__(config, dist)
        self.calls = 0

    def step(self, model, batch):
        loss, stats = super().step(model, batch)
        c = self.config
        if self.dist.rank == c.nan_rank and c.nan_from <= self.calls < c.nan_from + c.nan_count:
            loss = loss * torch.tensor(float("nan"))
        self.calls += 1
        return loss, stats
