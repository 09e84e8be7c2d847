"""Identity classification on procedurally drawn faces: the engine's smallest real task.

A compact CNN maps a face to an L2-normalised 128-d embedding; a cosine-softmax head
(NormFace-style, scale s) classifies the identity.  The data is generated in memory from a
seed, so the task runs anywhere in seconds; it is what ``make demo`` and the engine's
multi-process tests train.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetrain.synthetic_faces import make_identity_set
from launcher.dist import DistInfo, all_reduce_sum
from launcher.schema import TaskConfig


@dataclass(frozen=True)
class IdentityClassificationConfig(TaskConfig):
    """Synthetic identities and the model that learns them."""

    num_identities: int = 24
    train_images_per_identity: int = 24
    eval_images_per_identity: int = 8
    """Held-out images of the same identities, for evaluation accuracy."""
    image_size: int = 32
    batch_size: int = 32
    """Images per rank per micro-batch."""
    width: int = 32
    """Channels of the first conv block (doubled at each of the next two)."""
    embedding_dim: int = 128
    logit_scale: float = 16.0
    """Scale s of the cosine-softmax logits."""
    dropout: float = 0.1
    hflip: bool = True
    """Random horizontal flips during training."""
    data_seed: int = 1234
    """Seed of the generated identities (independent of train.seed)."""

    def __post_init__(self) -> None:
        if self.num_identities < 2:
            raise ValueError("num_identities must be at least 2")
        if min(self.train_images_per_identity, self.eval_images_per_identity, self.batch_size) < 1:
            raise ValueError("image counts and batch_size must be positive")


class SmallFaceNet(nn.Module):
    """Three conv blocks -> global pooling -> 128-d unit embedding -> cosine logits."""

    def __init__(self, num_classes: int, width: int, embedding_dim: int, logit_scale: float,
                 dropout: float):
        super().__init__()
        layers, channels = [], 3
        for out in (width, 2 * width, 4 * width):
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.GroupNorm(8, out),
                nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, padding=1, bias=False),
                nn.GroupNorm(8, out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.embed = nn.Linear(channels, embedding_dim)
        self.class_weight = nn.Parameter(torch.randn(num_classes, embedding_dim) * 0.01)
        self.logit_scale = logit_scale

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.features(images).mean(dim=(2, 3))
        embedding_BD = F.normalize(self.embed(self.dropout(pooled)), dim=1)
        logits_BC = self.logit_scale * embedding_BD @ F.normalize(self.class_weight, dim=1).T
        return logits_BC, embedding_BD


def to_model_input(images_BHWC: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return images_BHWC.permute(0, 3, 1, 2).float() / 127.5 - 1.0


class InMemoryBatches:
    """Shuffled batches of an in-memory set; batch ``b`` of epoch ``e`` on rank ``r`` is a pure
    function of (seed, e, b, r), so the position is just (epoch, batch)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 dist: DistInfo, seed: int, hflip: bool, position: dict[str, int] | None):
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.rank, self.world_size = dist.rank, dist.world_size
        self.seed, self.hflip = seed, hflip
        self.steps_per_epoch = len(labels) // (batch_size * dist.world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(labels)} training images cannot fill one batch of {batch_size} "
                f"on each of {dist.world_size} ranks"
            )
        position = position or {"epoch": 0, "batch": 0}
        self.epoch, self.batch = position["epoch"], position["batch"]
        self._order_epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def __iter__(self) -> InMemoryBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch == self.steps_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        if self._order_epoch != self.epoch:
            self._order_epoch, self._order = self.epoch, torch.randperm(len(self.labels),
                                                                         generator=self._generator(self.epoch))
        start = (self.batch * self.world_size + self.rank) * self.batch_size
        index = self._order[start : start + self.batch_size]
        images = to_model_input(self.images[index])
        if self.hflip:
            flip = torch.rand(len(index), generator=self._generator(self.epoch, self.batch, self.rank)) < 0.5
            images[flip] = images[flip].flip(-1)
        self.batch += 1
        return images, self.labels[index]

    def _generator(self, *key: int) -> torch.Generator:
        seed = np.random.SeedSequence([self.seed, *key]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(seed))


class IdentityClassificationTask:
    Config = IdentityClassificationConfig

    def __init__(self, config: IdentityClassificationConfig):
        self.config = config
        self.micro_batch_size = config.batch_size
        per_identity = config.train_images_per_identity + config.eval_images_per_identity
        images, labels = make_identity_set(
            config.num_identities, per_identity, config.image_size, config.data_seed
        )
        is_train = np.arange(len(labels)) % per_identity < config.train_images_per_identity
        self.train_images = torch.from_numpy(images[is_train])
        self.train_labels = torch.from_numpy(labels[is_train])
        self.eval_images = torch.from_numpy(images[~is_train])
        self.eval_labels = torch.from_numpy(labels[~is_train])

    def build_model(self) -> nn.Module:
        c = self.config
        return SmallFaceNet(c.num_identities, c.width, c.embedding_dim, c.logit_scale, c.dropout)

    def train_batches(self, dist: DistInfo, position: dict[str, Any] | None) -> InMemoryBatches:
        return InMemoryBatches(self.train_images, self.train_labels, self.config.batch_size,
                               dist, self.config.data_seed, self.config.hflip, position)

    def step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        images, labels = batch
        logits, _ = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        return loss, {"train_accuracy": accuracy}

    def evaluate(self, model: nn.Module, dist: DistInfo, run_dir: Path) -> dict[str, float]:
        """Accuracy and loss on the held-out images; each rank scores a disjoint share."""
        dtype = next(model.parameters()).dtype
        totals = torch.zeros(3, dtype=torch.float64)  # correct, loss sum, count
        mine = torch.arange(dist.rank, len(self.eval_labels), dist.world_size)
        for chunk in mine.split(256):
            images = to_model_input(self.eval_images[chunk]).to(dist.device, dtype)
            labels = self.eval_labels[chunk].to(dist.device)
            logits, _ = model(images)
            totals[0] += (logits.argmax(1) == labels).sum().item()
            totals[1] += F.cross_entropy(logits.float(), labels, reduction="sum").item()
            totals[2] += len(chunk)
        totals = all_reduce_sum(totals, dist)
        return {
            "eval_accuracy": (totals[0] / totals[2]).item(),
            "eval_loss": (totals[1] / totals[2]).item(),
            "chance_accuracy": 1.0 / self.config.num_identities,
        }
