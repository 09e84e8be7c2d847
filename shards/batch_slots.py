"""Image buffers in shared memory that DataLoader workers fill and the main process empties,
reused batch after batch.

A tensor a worker returns is moved into a new shared-memory segment for every batch, and
faulting in fresh pages is expensive: on the 2-core VM a 128 x 144 x 144 x 3 batch (8 MB)
cost about 5 ms to allocate in shared memory, 0.04 ms per image, a quarter of a worker's
whole budget per image.  Here the main process allocates ``depth`` buffers per worker once,
before the workers start; worker w writes its n-th batch into its buffer n mod depth and sends
only the slot number; the main process copies the images out (into pinned memory on GPU
hosts: the copy the DataLoader's pin thread would make anyway) and gives the slot back.

A semaphore per worker counts its free slots, so a worker never overwrites a batch the main
process has not copied yet; with depth = prefetch + 1 it does not wait in steady state.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

import torch


class BatchSlots:
    def __init__(self, workers: int, depth: int, shape: tuple[int, ...], context: BaseContext | None = None):
        context = context or multiprocessing.get_context()
        self.depth = depth
        try:
            self.images = torch.empty((workers, depth, *shape), dtype=torch.uint8).share_memory_()
        except RuntimeError as exc:
            megabytes = workers * depth * torch.Size(shape).numel() / 1e6
            raise RuntimeError(f"cannot allocate {megabytes:.0f} MB of shared memory for the reader's batch "
                               f"buffers ({workers} workers x {depth} batches): {exc}; give the job more "
                               "/dev/shm (docker run --shm-size) or use fewer workers or smaller batches") from None
        self.free = [context.Semaphore(depth) for _ in range(workers)]
        self._taken = [0] * workers  # per worker, in the worker's own process

    def take(self, worker: int) -> tuple[int, torch.Tensor]:
        """A free slot of ``worker`` (its number and buffer), in the worker's order."""
        self.free[worker].acquire()
        slot = self._taken[worker] % self.depth
        self._taken[worker] += 1
        return slot, self.images[worker, slot]

    def copy_out(self, worker: int, slot: int, pin_memory: bool = False) -> torch.Tensor:
        """The images of a filled slot as a tensor of their own; frees the slot."""
        images = torch.empty(self.images.shape[2:], dtype=torch.uint8, pin_memory=pin_memory)
        images.copy_(self.images[worker, slot])
        self.free[worker].release()
        return images
