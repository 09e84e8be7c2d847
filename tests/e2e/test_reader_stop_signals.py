"""The reader's worker processes and stop signals: a signal that reaches a worker while it starts
(torch's SIGTERM handler still in place) must not kill it; once started, workers ignore stops and
leave nothing blocked."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
from torch.utils.data import DataLoader, IterableDataset

from shards.loader import STOP_SIGNALS, StreamLoader, leave_stops_to_the_trainer, started_with_stops_held
from shards.stream_config import AugmentConfig, StreamConfig


class Numbers(IterableDataset):
    def __iter__(self):
        yield from range(3)


def signalled_while_starting(closing, worker_id: int) -> None:
    """A SIGTERM in the window between torch's worker set-up and the reader's own handlers."""
    os.kill(os.getpid(), signal.SIGTERM)
    leave_stops_to_the_trainer(closing, worker_id)


def loader() -> DataLoader:
    return DataLoader(Numbers(), batch_size=None, num_workers=1,
                      worker_init_fn=functools.partial(signalled_while_starting, multiprocessing.Event()))


def test_a_stop_signal_while_a_worker_starts_waits_for_its_handlers():
    assert [int(x) for x in started_with_stops_held(loader())] == [0, 1, 2]
    assert not set(signal.pthread_sigmask(signal.SIG_BLOCK, [])) & set(STOP_SIGNALS)  # the trainer's mask restored


def test_without_holding_them_the_worker_dies():  # what the hold prevents (the flaky stop test of 2026-12-03)
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid"):  # killed, or found gone
        list(iter(loader()))


def signal_set(pid: int, field: str) -> set[int]:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    bits = int(line.split()[1], 16)
    return {signum for signum in STOP_SIGNALS if bits & (1 << (signum - 1))}


def test_started_workers_ignore_stops_and_block_nothing(face_shards):
    config = StreamConfig(shards=str(face_shards), identities_per_batch=4, images_per_identity=2, num_workers=2,
                          buffer_samples=64, augment=AugmentConfig(size=32))
    reader = StreamLoader(config, 0, 1)
    next(reader)
    pids = [worker.pid for worker in reader._iterator._workers]
    try:
        for pid in pids:  # a worker that has not produced a batch yet may still be starting (signals held)
            deadline = time.monotonic() + 30
            while signal_set(pid, "SigBlk") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert signal_set(pid, "SigBlk") == set()
            assert signal_set(pid, "SigIgn") == {signal.SIGINT, signal.SIGHUP, signal.SIGUSR1}
            assert signal_set(pid, "SigCgt") == {signal.SIGTERM}
    finally:
        reader.close()
