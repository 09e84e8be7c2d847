"""Shared batch slots: a worker process fills them in order, never more than ``depth`` ahead of
what the main process has copied out, and copies out are the consumer's own."""

from __future__ import annotations

import multiprocessing

from shards.batch_slots import BatchSlots


def fill(slots: BatchSlots, batches: int) -> None:
    for number in range(batches):
        _, images = slots.take(0)
        images.fill_(number)


def test_a_worker_waits_for_copies_and_reuses_slots_in_order():
    context = multiprocessing.get_context("fork")
    slots = BatchSlots(workers=1, depth=3, shape=(2, 4, 4, 3), context=context)
    worker = context.Process(target=fill, args=(slots, 5))
    worker.start()
    worker.join(timeout=1)
    assert worker.is_alive()  # blocked: 3 slots filled, none copied out yet
    assert [int(slots.images[0, s, 0, 0, 0, 0]) for s in range(3)] == [0, 1, 2]
    first = slots.copy_out(0, 0)
    second = slots.copy_out(0, 1)
    worker.join(timeout=10)
    assert worker.exitcode == 0
    assert [int(slots.images[0, s, 0, 0, 0, 0]) for s in range(3)] == [3, 4, 2]  # batches 3, 4 reused 0, 1
    assert int(first.max()) == 0 and int(second.min()) == 1  # the copies did not change with the slots
    assert first.shape == (2, 4, 4, 3) and first.untyped_storage().data_ptr() != slots.images.data_ptr()
