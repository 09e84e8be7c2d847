"""The training reader: a shard folder's split as an endless, deterministic stream of batches.

There are ``world_size x num_workers`` readers (one per DataLoader worker of each rank).  The
stream is a sequence of *passes*; in pass p, shard i of a fixed seeded permutation goes to
reader ``(i + p) mod readers``, so over ``readers`` consecutive passes every reader, hence every
rank, reads every shard.  Each reader interleaves ``open_shards`` shards for identity
diversity, forms batches (P×K or shuffled), and decodes and augments only what it emits.

Everything random is seeded from (seed, reader) or (seed, reader, batch), so batch n of a
reader is a pure function of the data and the config; resuming replays the bookkeeping of the
batches already consumed without decoding them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from shards.augment import Augmenter
from shards.availability import split_availability
from shards.batch_slots import BatchSlots
from shards.pk_batcher import PKBatcher, Record
from shards.stream_config import StreamConfig
from shards.tarstream import TarDamaged, iter_members

log = logging.getLogger(__name__)

END = None  # marks the end of one interleaved stream


class SplitIndex:
    """One split of a shard folder, from its manifest, less the shards that are not there.

    A shard file that is absent or whose size differs from the manifest's (a partial copy, a
    deleted file) is left out and counted: ``unavailable`` names each one and why, and
    ``missing_samples`` counts the samples they hold.  More than ``max_missing_fraction`` of the
    split's samples missing is a MissingData error naming the files.
    """

    def __init__(self, root: str | Path, split: str, max_missing_fraction: float = 0.0):
        self.root = Path(root)
        availability = split_availability(self.root, split)
        availability.check(max_missing_fraction)
        self.unavailable, self.missing_samples = availability.unavailable, availability.missing_samples
        if self.unavailable:
            log.warning("%s: split %r: %d of %d samples left out, in %s", self.root, split, self.missing_samples,
                        availability.in_manifest, "; ".join(self.unavailable))
        self.shards = availability.available
        self.offsets = np.concatenate([[0], np.cumsum([s["count"] for s in self.shards])]).astype(int)
        self.total = int(self.offsets[-1])
        manifest = availability.manifest
        self.num_labels = len(manifest["labels"])
        ids = {name: entry["id"] for name, entry in manifest["labels"].items()}
        self.label_counts = {ids[name]: n for name, n in manifest["splits"][split]["labels"].items()}


def deal(num_shards: int, pass_index: int, reader: int, num_readers: int, seed: int) -> list[int]:
    """The shards reader ``reader`` reads in pass ``pass_index``, in its reading order."""
    base = np.random.default_rng([seed, 0]).permutation(num_shards)
    mine = [int(base[i]) for i in range(num_shards) if (i + pass_index) % num_readers == reader]
    order = np.random.default_rng([seed, 1, pass_index, reader]).permutation(len(mine))
    return [mine[j] for j in order]


@dataclass
class ReadCounters:
    read: int = 0
    """Samples read from shards."""
    corrupt: int = 0
    """Samples read but unusable: no usable cls, or an image that does not decode."""
    truncated_shards: int = 0
    truncated_samples: int = 0
    """Samples a damaged shard held after the point where it became unreadable."""


def read_shard(index: SplitIndex, shard: int, counters: ReadCounters) -> Iterator[Record]:
    """Records of one shard in order. A truncated tar costs only its remaining samples; a
    sample without a usable cls is skipped; both are counted and logged, never slept on."""
    path = index.root / index.shards[shard]["name"]
    first_index = int(index.offsets[shard])
    position = 0
    current: dict[str, Any] = {}
    try:
        with open(path, "rb", buffering=1 << 20) as stream:
            for name, data in iter_members(stream):
                key, _, field_name = name.partition(".")
                if current and key != current["__key__"]:
                    counters.read += 1
                    if record := _record(current, first_index + position, counters, path):
                        yield record
                    position += 1
                    current = {}
                current["__key__"] = key
                current[field_name] = data
    except (TarDamaged, OSError) as exc:
        counters.truncated_shards += 1
        counters.truncated_samples += index.shards[shard]["count"] - position
        log.warning("%s: unreadable after %d samples (%s); rest of the shard skipped", path, position, exc)
        return
    if current:
        counters.read += 1
        position += 1
        if record := _record(current, first_index + position - 1, counters, path):
            yield record
    if position < index.shards[shard]["count"]:  # ended early but cleanly: a zeroed tail, say
        counters.truncated_shards += 1
        counters.truncated_samples += index.shards[shard]["count"] - position
        log.warning("%s: ends after %d of its %d samples", path, position, index.shards[shard]["count"])


def _record(fields: dict, sample_index: int, counters: ReadCounters, path: Path) -> Record | None:
    try:
        label = int(fields["cls"])
    except (KeyError, ValueError):
        counters.corrupt += 1
        log.warning("%s: sample %s has no usable cls; skipped", path, fields["__key__"])
        return None
    return Record(fields["__key__"], sample_index, label, fields)


def interleave(index: SplitIndex, shards: list[int], width: int, counters: ReadCounters,
               stream_ids: Iterator[int]) -> Iterator[tuple[int, Record | None]]:
    """Round-robin over ``width`` open shards; (stream, END) when one is exhausted."""
    pending = iter(shards)
    open_streams: list[tuple[int, Iterator[Record]]] = []
    while True:
        while len(open_streams) < width and (shard := next(pending, None)) is not None:
            open_streams.append((next(stream_ids), read_shard(index, shard, counters)))
        if not open_streams:
            return
        for entry in list(open_streams):
            stream, records = entry
            record = next(records, END)
            if record is END:
                open_streams.remove(entry)
            yield stream, record


class ShardStream(IterableDataset):
    """Endless batches for one rank; each DataLoader worker is one reader."""

    def __init__(self, config: StreamConfig, index: SplitIndex, rank: int, world_size: int,
                 start_batches: list[int], rotation: int, slots: BatchSlots | None = None):
        self.config, self.index = config, index
        self.rank, self.world_size = rank, world_size
        self.start_batches, self.rotation = start_batches, rotation
        self.slots = slots
        """Shared image buffers of the DataLoader workers; None: batches carry their own images."""

    @property
    def workers(self) -> int:
        return max(1, self.config.num_workers)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        logical = ((info.id if info else 0) + self.rotation) % self.workers
        reader = self.rank * self.workers + logical
        counters = ReadCounters()
        producer = self._pk(reader, counters) if self.config.mode == "pk" else self._shuffled(reader, counters)
        augment = Augmenter(self.config.augment, train=True)
        for number, records in enumerate(producer):
            if number >= self.start_batches[logical]:  # earlier batches were consumed before a resume
                yield self._emit(records, reader, number, augment, counters, logical, info.id if info else None)

    def _passes(self, reader: int, counters: ReadCounters) -> Iterator[tuple[int, Record | None]]:
        readers = self.world_size * self.workers
        stream_ids = itertools.count()
        for pass_index in itertools.count():
            shards = deal(len(self.index.shards), pass_index, reader, readers, self.config.seed)
            yield from interleave(self.index, shards, self.config.open_shards, counters, stream_ids)

    def _pk(self, reader: int, counters: ReadCounters) -> Iterator[list[Record]]:
        c = self.config
        self.batcher = PKBatcher(c.identities_per_batch, c.images_per_identity, c.buffer_samples,
                                 c.small_identities, np.random.default_rng([c.seed, 2, reader]))
        for stream, record in self._passes(reader, counters):
            if record is END:
                self.batcher.end_stream(stream)
                continue
            self.batcher.add(stream, record)
            while self.batcher.full:
                batch = self.batcher.draw()
                if batch is None:
                    self.batcher.make_room()
                else:
                    yield batch

    def _shuffled(self, reader: int, counters: ReadCounters) -> Iterator[list[Record]]:
        c = self.config
        rng = np.random.default_rng([c.seed, 3, reader])
        weights = class_weights(self.index.label_counts, c.class_balance)
        buffer: list[Record] = []
        batch: list[Record] = []
        for _, record in self._passes(reader, counters):
            if record is END:
                continue
            weight = weights.get(record.label, 1.0)
            buffer += [record] * (int(weight) + (rng.random() < weight - int(weight)))
            while len(buffer) >= c.buffer_samples:
                pick = rng.integers(len(buffer))
                buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                batch.append(buffer.pop())
                if len(batch) == c.batch_size:
                    yield batch
                    batch = []

    def _emit(self, records: list[Record], reader: int, number: int, augment: Augmenter, counters: ReadCounters,
              logical: int, worker_id: int | None) -> dict[str, Any]:
        """Decode and augment one batch: uint8 (B, H, W, 3), into a shared slot when this is a
        DataLoader worker (the consumer normalises on its device)."""
        rng = np.random.default_rng([self.config.seed, 4, reader, number])
        size = self.config.augment.size
        out: dict[str, Any] = {}
        if self.slots is not None and worker_id is not None:
            slot, images = self.slots.take(worker_id)
            out["slot"] = (worker_id, slot)
        else:
            images = out["image"] = torch.empty((len(records), size, size, 3), dtype=torch.uint8)
        pixels, undecodable, first_error = images.numpy(), [], ""
        for position, record in enumerate(records):
            try:
                augment(record.data, rng, pixels[position])
            except ValueError as exc:
                counters.corrupt += 1
                log.warning("%s: sample %s undecodable (%s); its slot repeats another image",
                            self.index.root, record.key, exc)
                undecodable.append(position)
                first_error = first_error or f"{record.key}: {exc}"
        stats = dict(vars(counters))
        if self.config.mode == "pk":
            stats.update(vars(self.batcher.stats))
        if len(undecodable) == len(records):  # nothing to fill the slots from: the rank stops with this line
            return {**out, "undecodable": f"{self.index.root} split {self.config.split!r}: every image of a batch of "
                    f"{len(records)} is undecodable (first {first_error}); shards verify {self.index.root} checks "
                    "every file", "worker": logical, "stats": stats}
        labels = [r.label for r in records]
        keys = [r.key for r in records]
        indices = [r.index for r in records]
        fill_undecodable(pixels, undecodable, labels, keys, indices)
        # numpy, not tensors: each tensor would cross to the main process as a shared-memory segment of its own
        return {**out, "label": np.array(labels), "index": np.array(indices), "key": keys, "worker": logical,
                "stats": stats}


def fill_undecodable(images: np.ndarray, undecodable: list[int], labels: list[int], keys: list[str],
                     indices: list[int]) -> None:
    """Give an undecodable sample's slot a decodable image (the batch has one), of the same identity
    when possible, so every batch stays full and its P×K label structure stays intact."""
    good = sorted(set(range(len(images))) - set(undecodable))
    for slot in undecodable:
        same = [i for i in good if labels[i] == labels[slot]]
        donor = (same or good)[0]
        images[slot], labels[slot], keys[slot], indices[slot] = (images[donor], labels[donor], keys[donor],
                                                                 indices[donor])


def class_weights(label_counts: dict[int, int], balance: str) -> dict[int, float]:
    """Per-class repeat factors: oversample to the largest class, or thin to the smallest."""
    if balance == "none" or not label_counts:
        return {}
    target = max(label_counts.values()) if balance == "oversample" else min(label_counts.values())
    return {label: target / count for label, count in label_counts.items() if count}
