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
    records = sum(n for sizes in sizes_per_stream for n in sizes.values())
    while len(batches) <= records and (batch := batcher.draw()) is not None:  # a batcher that never empties fails
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


def record(label, n, nbytes=10):
    return Record(f"{label}_{n}", label * 100 + n, label, {"jpg": b"x" * nbytes})


def test_record_size_counts_only_its_byte_fields():
    assert Record("k", 0, 1, {"jpg": b"abc", "json": bytearray(b"{}"), "cls": 7}).nbytes == 5


def test_full_buffer_without_p_eligible_evicts_the_largest_incomplete_identity():
    """Complete 5 (label 3, stream ended), incomplete 4 (label 1) and incomplete 1 (label 2): only two
    identities are eligible for P = 3, so the incomplete one of 4 goes, not the larger complete one."""
    batcher = PKBatcher(3, 3, buffer_samples=10, small_identities="skip", rng=np.random.default_rng(0))
    for n in range(5):
        batcher.add(2, record(3, n))
    batcher.end_stream(2)
    for n in range(4):
        batcher.add(0, record(1, n))
    batcher.add(1, record(2, 0))
    assert batcher.full and batcher.draw() is None
    batcher.make_room()
    assert batcher.stats.evicted == 4
    assert (batcher.size, batcher.nbytes) == (6, 60)
    assert not batcher.full
    batcher.end_stream(1)  # the other streams' identities still complete: label 2 (1 image) is dropped
    assert (batcher.stats.small_identities_dropped, batcher.size) == (1, 5)
    for n in range(4, 9):  # label 1 continues on stream 0: a new incomplete group of 5, the next victim
        batcher.add(0, record(1, n))
    assert batcher.full and batcher.draw() is None
    batcher.make_room()
    assert (batcher.stats.evicted, batcher.size) == (9, 5)


def test_with_every_identity_complete_the_largest_one_is_evicted():
    batcher = PKBatcher(3, 2, buffer_samples=6, small_identities="replace", rng=np.random.default_rng(0))
    for stream, (label, size) in enumerate([(1, 2), (2, 4)]):
        for n in range(size):
            batcher.add(stream, record(label, n))
        batcher.end_stream(stream)
    assert batcher.full and batcher.draw() is None
    batcher.make_room()
    assert (batcher.stats.evicted, batcher.size) == (4, 2)


def test_an_identity_cut_by_a_shard_boundary_fills_one_slot_of_a_batch():
    """Label 1 arrives on two streams (two groups): P = 2 must take label 2 beside it, whatever the draw."""
    for seed in range(10):
        batcher = PKBatcher(2, 3, buffer_samples=100, small_identities="skip", rng=np.random.default_rng(seed))
        for stream, label in enumerate([1, 1, 2]):
            for n in range(3):
                batcher.add(stream, record(label, 10 * stream + n))
            batcher.end_stream(stream)
        assert Counter(r.label for r in batcher.draw()) == {1: 3, 2: 3}


@pytest.mark.parametrize(("small", "batches", "small_dropped"), [("skip", 4, 1), ("replace", 5, 0)])
def test_leftovers_and_small_identities_are_counted_exactly(small, batches, small_dropped):
    """One stream of identities of 5, 1, 3 and 2 images, K = 2: identity 1 gives two draws and 1 leftover,
    identity 3 one draw and 1 leftover (unused: 2); identity 2 (1 image) is dropped with "skip", drawn
    with replacement with "replace"."""
    batcher = PKBatcher(1, 2, buffer_samples=100, small_identities=small, rng=np.random.default_rng(0))
    emitted = feed(batcher, [{1: 5, 2: 1, 3: 3, 4: 2}])
    assert len(emitted) == batches
    assert batcher.stats.unused_leftovers == 2
    assert batcher.stats.small_identities_dropped == small_dropped
    assert (batcher.stats.evicted, batcher.size, batcher.nbytes) == (0, 0, 0)


def test_unused_leftovers_count_images():
    """K = 3: identity 1 (5 images) leaves 2, identity 2 (7 images) leaves 1."""
    batcher = PKBatcher(1, 3, buffer_samples=100, small_identities="skip", rng=np.random.default_rng(0))
    assert len(feed(batcher, [{1: 5, 2: 7}])) == 3
    assert batcher.stats.unused_leftovers == 3


def test_leftovers_of_an_identity_drawn_while_still_streaming_are_counted_when_it_ends():
    """Buffer of 3, K = 2: identity 1 (5 images) is drawn twice mid-stream; its last image is unused once
    identity 2 starts, and identity 2's last image once the stream ends."""
    batcher = PKBatcher(1, 2, buffer_samples=3, small_identities="skip", rng=np.random.default_rng(0))
    emitted = feed(batcher, [{1: 5, 2: 3}])
    assert [Counter(r.label for r in b) for b in emitted] == [{1: 2}, {1: 2}, {2: 2}]
    assert (batcher.stats.unused_leftovers, batcher.stats.small_identities_dropped, batcher.stats.evicted) == (2, 0, 0)


def test_every_record_is_emitted_buffered_evicted_or_counted_as_dropped():
    """Conservation on interleaved streams with a small buffer; with K = 2 every dropped small identity and
    every unused leftover is a single image, so the counters add up to the records that went in."""
    sizes = [{label: 1 + (label * 7) % 6 for label in range(0, 15)},
             {label: 1 + (label * 5) % 7 for label in range(15, 30)},
             {label: 1 + (label * 3) % 5 for label in range(30, 45)}]
    batcher = PKBatcher(3, 2, buffer_samples=10, small_identities="skip", rng=np.random.default_rng(2))
    emitted = [r.key for b in feed(batcher, sizes) for r in b]
    stats = batcher.stats
    assert len(set(emitted)) == len(emitted)  # without replacement
    assert min(stats.evicted, stats.unused_leftovers, stats.small_identities_dropped, batcher.size) > 0
    added = sum(n for stream in sizes for n in stream.values())
    dropped = stats.evicted + stats.unused_leftovers + stats.small_identities_dropped
    assert added == len(emitted) + batcher.size + dropped
    assert (stats.peak_samples, stats.peak_bytes, batcher.nbytes) == (10, 100, 10 * batcher.size)
