"""P×K batches (P identities, K images each) from identity-contiguous streams, with a bounded
buffer.  Pure bookkeeping over sample records: no I/O and no decoding, so a resumed reader can
replay it cheaply to fast-forward.

Rules (one pass over a reader's shards):
* samples arrive from several interleaved streams; within a stream, identities are contiguous,
  so an identity is *complete* when its stream moves to another identity or ends;
* an identity is eligible with >= K buffered samples; a complete identity whose whole size is
  below K is eligible only with ``small_identities="replace"`` (drawn with replacement) and is
  dropped (and counted) with ``"skip"``;
* when the buffer holds ``buffer_samples`` samples, a batch is drawn: P eligible identities with
  distinct labels uniformly at random (an identity cut by a shard boundary forms two groups),
  K samples each without replacement; leftovers of a complete identity
  that can no longer fill K are dropped (counted as unused);
* if the buffer is full but fewer than P identities are eligible, the largest incomplete
  identity is evicted (counted), so memory stays bounded whatever the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Record:
    key: str
    index: int
    """Global sample index in the split (for coverage)."""
    label: int
    data: dict[str, Any]
    """Raw fields (encoded image bytes, json); decoded only when the batch is emitted."""
    nbytes: int = 0

    def __post_init__(self) -> None:
        self.nbytes = sum(len(v) for v in self.data.values() if isinstance(v, (bytes, bytearray)))


@dataclass
class _Identity:
    records: list[Record] = field(default_factory=list)
    complete: bool = False
    drawn: bool = False
    """Has given at least one K-draw (its leftovers under K are then unused, not 'small')."""


@dataclass
class BatcherStats:
    small_identities_dropped: int = 0
    unused_leftovers: int = 0
    evicted: int = 0
    peak_samples: int = 0
    peak_bytes: int = 0


class PKBatcher:
    def __init__(self, identities_per_batch: int, images_per_identity: int, buffer_samples: int,
                 small_identities: str, rng: np.random.Generator):
        self.P, self.K = identities_per_batch, images_per_identity
        self.buffer_samples = buffer_samples
        self.replace_small = small_identities == "replace"
        self.rng = rng
        self.groups: dict[tuple[int, int], _Identity] = {}  # (stream, label) -> identity
        self.current: dict[int, tuple[int, int]] = {}  # stream -> its identity being filled
        self.size = 0
        self.nbytes = 0
        self.stats = BatcherStats()

    def add(self, stream: int, record: Record) -> None:
        group_id = (stream, record.label)
        if self.current.get(stream) not in (None, group_id):
            self._complete(self.current[stream])
        self.current[stream] = group_id
        self.groups.setdefault(group_id, _Identity()).records.append(record)
        self.size += 1
        self.nbytes += record.nbytes
        self.stats.peak_samples = max(self.stats.peak_samples, self.size)
        self.stats.peak_bytes = max(self.stats.peak_bytes, self.nbytes)

    def end_stream(self, stream: int) -> None:
        if stream in self.current:
            self._complete(self.current.pop(stream))

    @property
    def full(self) -> bool:
        return self.size >= self.buffer_samples

    def eligible(self) -> list[tuple[int, int]]:
        return [g for g, identity in self.groups.items()
                if len(identity.records) >= self.K or (identity.complete and self.replace_small
                                                       and not identity.drawn and identity.records)]

    def draw(self) -> list[Record] | None:
        """One batch of P×K records, or None if fewer than P identities are eligible."""
        eligible = self.eligible()
        chosen, labels = [], set()
        for position in self.rng.permutation(len(eligible)):
            group_id = eligible[position]
            if group_id[1] not in labels:  # an identity cut by a shard boundary is two groups
                chosen.append(group_id)
                labels.add(group_id[1])
                if len(chosen) == self.P:
                    break
        if len(chosen) < self.P:
            return None
        batch = []
        for group_id in chosen:
            identity = self.groups[group_id]
            records = identity.records
            if len(records) >= self.K:
                picks = set(self.rng.choice(len(records), size=self.K, replace=False).tolist())
                batch += [records[i] for i in sorted(picks)]
                identity.records = [r for i, r in enumerate(records) if i not in picks]
                self._forget(self.K, sum(r.nbytes for i, r in enumerate(records) if i in picks))
            else:  # a small complete identity, drawn with replacement
                batch += [records[i] for i in self.rng.choice(len(records), size=self.K, replace=True)]
                identity.records = []
                self._forget(len(records), sum(r.nbytes for r in records))
            identity.drawn = True
            self._tidy(group_id)
        return batch

    def make_room(self) -> None:
        """Full but not enough eligible identities: evict the largest incomplete one."""
        incomplete = [g for g, identity in self.groups.items() if not identity.complete]
        victim = max(incomplete or self.groups, key=lambda g: len(self.groups[g].records))
        records = self.groups.pop(victim).records
        self.stats.evicted += len(records)
        self._forget(len(records), sum(r.nbytes for r in records))
        for stream, group_id in list(self.current.items()):
            if group_id == victim:
                del self.current[stream]

    def _complete(self, group_id: tuple[int, int]) -> None:
        if group_id in self.groups:
            self.groups[group_id].complete = True
            self._tidy(group_id)

    def _tidy(self, group_id: tuple[int, int]) -> None:
        """Drop a complete identity that can never be drawn again."""
        identity = self.groups[group_id]
        if not identity.complete or len(identity.records) >= self.K:
            return
        if identity.records and self.replace_small and not identity.drawn:
            return
        if identity.records:
            if identity.drawn:
                self.stats.unused_leftovers += len(identity.records)
            else:
                self.stats.small_identities_dropped += 1
            self._forget(len(identity.records), sum(r.nbytes for r in identity.records))
        del self.groups[group_id]

    def _forget(self, count: int, nbytes: int) -> None:
        self.size -= count
        self.nbytes -= nbytes
