"""``StreamLoader``: a rank's training batches through a DataLoader, with a resumable position.

The DataLoader takes batches from its workers in strict rotation, so rank-level batch n is
batch n // W of logical worker n % W.  The position is therefore one number, the batches this
rank consumed; resuming starts each worker at its own count and rotates the worker roles so the
next batch comes from the right one.  Epochs are a fixed number of batches on every rank (never
"until the data runs out"), so no rank can wait in a collective that another rank skipped.
Nothing here is collective: the training loop reduces ``stats`` and ``epoch_coverage`` over
the ranks.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import multiprocessing.util  # its exit handler registered before ours (see close_open_loaders)
import os
import signal
import weakref
from collections.abc import Iterator
from dataclasses import fields
from multiprocessing.synchronize import Event as EventType
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from shards.augment import channels_first
from shards.availability import MissingData, check_enough_identities
from shards.batch_slots import BatchSlots
from shards.pk_batcher import BatcherStats
from shards.stream import ReadCounters, ShardStream, SplitIndex
from shards.stream_config import StreamConfig

PREFETCH = 2
"""Batches each worker prepares ahead (the DataLoader's default); each holds a shared image slot."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
"""The training process's stop signals (launcher/stops.py, which shards does not import)."""


def leave_stops_to_the_trainer(closing: EventType, worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: stop signals are the training process's decision.

    torchrun's agent passes a signal on to a worker's whole process group, so the reader's worker
    processes receive it too; torch's worker handler dies of SIGTERM, and torch then fails the
    training process ("DataLoader worker ... is killed by signal") before it can checkpoint.  So
    SIGINT, SIGHUP and SIGUSR1 are ignored here, and SIGTERM too until the loader is closing (it
    ends workers that do not join in time with SIGTERM) or the training process is gone.  The
    workers start with the stop signals blocked (``started_with_stops_held``), so one sent while
    torch's handler was still in place waits until now, and meets these."""
    for signum in set(STOP_SIGNALS) - {signal.SIGTERM}:
        signal.signal(signum, signal.SIG_IGN)
    parent = os.getppid()

    def on_sigterm(signum: int, frame: Any) -> None:
        if closing.is_set() or os.getppid() != parent:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


_open_loaders: weakref.WeakSet[StreamLoader] = weakref.WeakSet()


@atexit.register
def close_open_loaders() -> None:
    """At exit, multiprocessing SIGTERMs the daemonic worker processes and waits for them; a loader
    not closed (an error path, a script) has workers that ignore that SIGTERM, so the process would
    wait forever.  atexit runs handlers last-registered first: this one before multiprocessing's."""
    for loader in list(_open_loaders):
        loader.closing.set()


def started_with_stops_held(loader: DataLoader) -> Iterator:
    """``iter(loader)``, its worker processes forked with the stop signals blocked: from the fork
    until ``leave_stops_to_the_trainer`` runs, a worker has torch's SIGTERM handler, which would
    kill it (a job stopped in its first second lost its run).  The training process gets a signal
    that came meanwhile as soon as the workers are forked."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def as_produced(batch: dict[str, Any]) -> dict[str, Any]:
    """The DataLoader's collate step: keep the worker's numpy arrays (default_convert would make
    tensors, each sent to the main process as a shared-memory segment of its own)."""
    return batch


class StreamLoader:
    def __init__(self, config: StreamConfig, rank: int, world_size: int,
                 position: dict[str, Any] | None = None, device: torch.device | None = None):
        self.config, self.rank, self.world_size = config, rank, world_size
        self.device = device or torch.device("cpu")
        self.index = SplitIndex(config.shards, config.split, config.max_missing_fraction)
        self.workers = max(1, config.num_workers)
        self.steps_per_epoch = config.steps_per_epoch or max(
            1, self.index.total // (config.batch_samples * world_size))
        self._check_enough_identities()
        self.consumed = 0
        if position is not None:
            self._check_position(position)
            self.consumed = position["batches"]
        starts = [self._produced_by(w, self.consumed) for w in range(self.workers)]
        self.pin_memory = self.device.type == "cuda"
        self.slots = None
        if config.num_workers:
            size = config.augment.size
            self.slots = BatchSlots(config.num_workers, PREFETCH + 1, (config.batch_samples, size, size, 3))
        dataset = ShardStream(config, self.index, rank, world_size, starts, rotation=self.consumed % self.workers,
                              slots=self.slots)
        self.closing = multiprocessing.Event()
        _open_loaders.add(self)
        self.loader = DataLoader(
            dataset, batch_size=None, num_workers=config.num_workers, collate_fn=as_produced,
            prefetch_factor=PREFETCH if config.num_workers else None,
            persistent_workers=False,  # the stream is endless: workers never restart within a run
            worker_init_fn=functools.partial(leave_stops_to_the_trainer, self.closing),
            # the seed a DataLoader draws for its workers comes from here, not from torch's global
            # stream (dropout's), which a resumed run must find as the uninterrupted run left it
            generator=torch.Generator().manual_seed(config.seed),
        )
        self._iterator = None
        self.worker_stats: dict[int, dict[str, int]] = {}
        self._reset_coverage()
        self._finished_coverage: dict[str, torch.Tensor] | None = None

    @property
    def epoch(self) -> int:
        return self.consumed // self.steps_per_epoch

    def _produced_by(self, worker: int, consumed: int) -> int:
        """Batches logical worker ``worker`` had produced when ``consumed`` were taken in rotation."""
        return (consumed - worker + self.workers - 1) // self.workers if consumed > worker else 0

    def _check_position(self, position: dict[str, Any]) -> None:
        expected = {"world_size": self.world_size, "num_workers": self.workers, "seed": self.config.seed,
                    "left_out": self.index.unavailable}
        saved = {"left_out": [], **position}  # positions saved before shards could be left out
        changed = {k: (saved.get(k), v) for k, v in expected.items() if saved.get(k) != v}
        if changed:
            details = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            raise ValueError(f"cannot resume the reader exactly: {details}; resume with the saved values "
                             "or start a new run")

    def _check_enough_identities(self) -> None:
        if self.config.mode == "pk":
            check_enough_identities(self.index.label_counts, self.config.identities_per_batch,
                                    self.config.images_per_identity, self.config.small_identities,
                                    f"{self.config.shards} split {self.config.split}")

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.consumed, "epoch": self.epoch, "world_size": self.world_size,
                "num_workers": self.workers, "seed": self.config.seed, "left_out": self.index.unavailable,
                "per_worker": [self._produced_by(w, self.consumed) for w in range(self.workers)]}

    def __iter__(self) -> StreamLoader:
        return self

    def close(self) -> None:
        """Stop the worker processes now (they heed SIGTERM again from here on)."""
        self.closing.set()
        self._iterator = None  # the DataLoader's iterator shuts its workers down when it goes

    def __next__(self) -> dict[str, Any]:
        if self._iterator is None:
            self._iterator = started_with_stops_held(self.loader)
        batch = next(self._iterator)
        self.worker_stats[batch.pop("worker")] = batch.pop("stats")
        if "undecodable" in batch:
            raise MissingData(batch["undecodable"])
        if "slot" in batch:
            images = self.slots.copy_out(*batch.pop("slot"), pin_memory=self.pin_memory)
        else:
            images = batch["image"].pin_memory() if self.pin_memory else batch["image"]
        batch["image"] = channels_first(images)
        batch["label"], batch["index"] = torch.from_numpy(batch["label"]), torch.from_numpy(batch["index"])
        self.consumed += 1
        self._seen_labels[batch["label"].numpy()] = True
        self._seen_samples[batch["index"].numpy()] = True
        if self.consumed % self.steps_per_epoch == 0:
            in_split = [label for label, n in self.index.label_counts.items() if n]
            self._finished_coverage = {"identities": torch.from_numpy(self._seen_labels[in_split]),
                                       "images": torch.from_numpy(self._seen_samples)}
            self._reset_coverage()
            self._check_losses()
        return batch

    def _check_losses(self) -> None:
        """Once per epoch: undecodable samples and the rest of damaged shards, against what was read."""
        stats = self.stats()
        lost, read = stats["corrupt"] + stats["truncated_samples"], stats["read"] + stats["truncated_samples"]
        if lost > self.config.max_missing_fraction * read:
            raise MissingData(
                f"{self.config.shards} split {self.config.split!r}: rank {self.rank} lost {lost:.0f} of {read:.0f} "
                f"samples ({lost / read:.1%}, more than the {self.config.max_missing_fraction:.1%} allowed by "
                f"max_missing_fraction) to undecodable images or damaged shards (the warnings above name them; "
                f"shards verify {self.config.shards} checks every file)")

    def stats(self) -> dict[str, float]:
        """Counters summed over this rank's workers: samples read, corrupt samples, truncated shards
        and what they held, in pk mode the batcher's drops and buffer peaks; and the shards (and
        samples) of the split left out as missing.  The same keys from the first batch on."""
        kinds = [ReadCounters] + ([BatcherStats] if self.config.mode == "pk" else [])
        totals = {f.name: 0.0 for kind in kinds for f in fields(kind)}
        for stats in self.worker_stats.values():
            for key, value in stats.items():
                totals[key] = max(totals[key], value) if key.startswith("peak") else totals[key] + value
        # the split's shards left out at the start: the same on every rank
        return {**totals, "missing_shards": float(len(self.index.unavailable)),
                "missing_samples": float(self.index.missing_samples)}

    def epoch_coverage(self) -> dict[str, torch.Tensor] | None:
        """Once after each epoch: which identities (of the split) and images this rank saw."""
        coverage, self._finished_coverage = self._finished_coverage, None
        return coverage

    def _reset_coverage(self) -> None:
        self._seen_labels = np.zeros(self.index.num_labels, dtype=bool)
        self._seen_samples = np.zeros(self.index.total, dtype=bool)
