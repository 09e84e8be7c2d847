"""The P×K batcher on synthetic identity streams (pure bookkeeping, no I/O)."""

from collections import Counter

import numpy as np
import pytest

from shards.pk_batcher import PKBatcher, Record


def feed(batcher, sizes_per_stream):
    """Interleave identity-contiguous streams; draw whenever the buffer is full; flush at the end."""
    streams = []
    for sizes in sizes_per_stream:
        records = []
        for label, size in sizes.items():
            records += [Record(f"{label}_{n}", label * 100 + n, label, {"jpg": b"x" * 10}) for n in range(size)]
        streams.append(iter(records))
    batches, open_streams = [], list(enumerate(streams))
    while open_streams:
        for entry in list(open_streams):
            record = next(entry[1], None)
            if record is None:
                batcher.end_stream(entry[0])
                open_streams.remove(entry)
                continue
            batcher.add(entry[0], record)
            while batcher.full:
                batch = batcher.draw()
                if batch is None:
                    batcher.make_room()
                else:
                    batches.append(batch)
    while (batch := batcher.draw()) is not None:
        batches.append(batch)
    return batches


SIZES = [{label: 1 + (label * 7) % 9 for label in range(0, 20)},
         {label: 1 + (label * 5) % 11 for label in range(20, 40)}]


@pytest.mark.parametrize("small", ["replace", "skip"])
def test_every_batch_is_p_distinct_identities_times_k(small):
    batcher = PKBatcher(4, 3, buffer_samples=40, small_identities=small, rng=np.random.default_rng(0))
    batches = feed(batcher, SIZES)
    assert len(batches) > 5
    for batch in batches:
        counts = Counter(r.label for r in batch)
        assert len(counts) == 4 and set(counts.values()) == {3}
    assert batcher.stats.peak_samples <= 40
    assert batcher.stats.peak_bytes <= 40 * 10


def test_skip_mode_never_draws_small_identities_and_counts_them():
    batcher = PKBatcher(4, 3, buffer_samples=40, small_identities="skip", rng=np.random.default_rng(0))
    batches = feed(batcher, SIZES)
    small = {label for sizes in SIZES for label, n in sizes.items() if n < 3}
    assert not small & {r.label for b in batches for r in b}
    assert batcher.stats.small_identities_dropped == len(small)


def test_without_replacement_no_image_repeats_within_a_pass_except_small_identities():
    batcher = PKBatcher(4, 3, buffer_samples=40, small_identities="replace", rng=np.random.default_rng(1))
    batches = feed(batcher, SIZES)
    small = {label for sizes in SIZES for label, n in sizes.items() if n < 3}
    keys = Counter(r.key for b in batches for r in b if r.label not in small)
    assert max(keys.values()) == 1
    assert small & {r.label for b in batches for r in b}  # small ones do appear, with replacement


def test_same_seed_same_batches():
    def keys(seed):
        batcher = PKBatcher(4, 3, buffer_samples=40, small_identities="replace", rng=np.random.default_rng(seed))
        return [[r.key for r in b] for b in feed(batcher, SIZES)]
    assert keys(3) == keys(3) and keys(3) != keys(4)


def test_a_tiny_buffer_evicts_instead_of_growing():
    batcher = PKBatcher(4, 3, buffer_samples=8, small_identities="skip", rng=np.random.default_rng(0))
    feed(batcher, [{0: 30, 1: 30}, {2: 30, 3: 30}])
    assert batcher.stats.peak_samples <= 8
    assert batcher.stats.evicted > 0
