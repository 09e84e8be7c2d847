"""Evaluation iteration: every sample of a split exactly once across ranks, no padding.

Shard i goes to rank ``i mod world_size`` and, within a rank, to DataLoader worker
``(i div world_size) mod num_workers``.  Ranks may therefore get different numbers of batches:
an evaluation gathers its results once at the end (never a collective per batch), and no
duplicate ever enters a metric.  Each batch carries the samples' group (identity or patient)
and json, for per-patient metrics and pair look-ups.  Images are uint8 (normalise with
``shards.augment.normalize_batch`` on the consumer's device).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from shards.augment import Augmenter, stack_images
from shards.availability import MissingData
from shards.stream import ReadCounters, SplitIndex, read_shard
from shards.stream_config import AugmentConfig

log = logging.getLogger(__name__)


class EvalStream(IterableDataset):
    def __init__(self, root: str, split: str, rank: int, world_size: int, batch_size: int,
                 augment: AugmentConfig, max_missing_fraction: float = 0.0, canvas: int | None = None):
        self.index = SplitIndex(root, split, max_missing_fraction)
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.augment, self.canvas = augment, canvas

    def shards_of(self, worker: int, workers: int) -> list[int]:
        mine = range(self.rank, len(self.index.shards), self.world_size)
        return [s for position, s in enumerate(mine) if position % workers == worker]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        augment = Augmenter(self.augment, train=False, canvas=self.canvas)
        rng = np.random.default_rng(0)  # evaluation draws nothing
        counters = ReadCounters()
        pending: list[tuple] = []
        for shard in self.shards_of(worker, workers):
            for record in read_shard(self.index, shard, counters):
                image = np.empty((self.augment.size, self.augment.size, 3), dtype=np.uint8)
                try:
                    augment(record.data, rng, image)
                except ValueError as exc:
                    counters.corrupt += 1
                    log.warning("%s: eval sample %s undecodable (%s); left out", self.index.root, record.key, exc)
                    continue
                pending.append((image, record))
                if len(pending) == self.batch_size:
                    yield collate(pending)
                    pending = []
        if pending:
            yield collate(pending)


def collate(pending: list[tuple]) -> dict[str, Any]:
    metas = [json.loads(record.data["json"]) for _, record in pending]
    return {
        "image": stack_images([image for image, _ in pending]),
        "label": torch.tensor([record.label for _, record in pending]),
        "index": torch.tensor([record.index for _, record in pending]),
        "key": [record.key for _, record in pending],
        "group": [meta.get("group", "") for meta in metas],
        "meta": metas,
    }


def samples_not_read(loader: DataLoader, read: int, allowed: bool) -> int:
    """Samples of the evaluation split that were not scored (shards left out, images that did
    not decode), summed over ranks by the caller into ``read``; a MissingData error when some
    were and an incomplete evaluation set is not ``allowed``."""
    index = loader.dataset.index
    missing = index.missing_samples + index.total - read
    if missing and not allowed:
        raise MissingData(f"{index.root}: {missing} of {index.total + index.missing_samples} evaluation samples "
                          "could not be read (the warnings above name them); repair the shards (shards verify) or "
                          "allow an incomplete evaluation set (the task's eval_allow_incomplete) to evaluate on the "
                          "rest")
    return missing


def eval_loader(root: str, split: str, rank: int, world_size: int, batch_size: int,
                augment: AugmentConfig, num_workers: int = 0, max_missing_fraction: float = 0.0,
                canvas: int | None = None) -> DataLoader:
    """The split's batches for this rank; ``loader.dataset.index`` says what the split should hold
    (the samples of shards left out as missing: ``index.missing_samples``).  ``canvas``: the
    training shards' side, for a random-window augmentation (``Augmenter``)."""
    dataset = EvalStream(root, split, rank, world_size, batch_size, augment, max_missing_fraction, canvas)
    return DataLoader(dataset, batch_size=None, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(0))  # leaves torch's global random stream alone
