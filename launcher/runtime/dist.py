"""Process-group set-up: one code path for CPU (gloo) and GPU (NCCL).

Called only from a process entry point, never at import.  The result is a ``DistInfo``
passed explicitly to whatever needs ranks or the device.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for single-process runs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_distributed(timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group described by torchrun's environment (or make a group of one).

    The backend follows the device: NCCL when CUDA is present, gloo otherwise.
    """
    import deepspeed  # deferred: importing it probes accelerators

    if "RANK" not in os.environ:  # plain `python -m launcher.runtime.train`: a world of one
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ["WORLD_SIZE"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not torch_dist.is_initialized():
        deepspeed.init_distributed(
            dist_backend=backend,
            timeout=datetime.timedelta(minutes=timeout_minutes),
            verbose=False,
        )
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def all_reduce_sum(values: torch.Tensor, dist: DistInfo) -> torch.Tensor:
    """A small tensor summed over ranks, returned on the device it came from; it travels on the
    group's device (NCCL needs CUDA), so a device tensor is reduced without a host sync.  The
    identity for one rank."""
    if dist.world_size == 1:
        return values
    reduced = values.to(dist.device, copy=True)
    torch_dist.all_reduce(reduced)
    return reduced.to(values.device)


def broadcast_object(value: Any, dist: DistInfo) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object; the identity for one rank)."""
    if dist.world_size == 1:
        return value
    holder = [value]
    torch_dist.broadcast_object_list(holder, src=0)
    return holder[0]


def broadcast_buffers(module: torch.nn.Module, dist: DistInfo) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every rank.  DeepSpeed, unlike DDP,
    never syncs them: each rank's drift apart, while a checkpoint keeps rank 0's alone."""
    if dist.world_size > 1:
        for buffer in module.buffers():
            torch_dist.broadcast(buffer, src=0)


def all_gather_object(value: Any, dist: DistInfo) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    if dist.world_size == 1:
        return [value]
    gathered: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(gathered, value)
    return gathered


class _GatherWithGrad(torch.autograd.Function):
    """Forward: all ranks' rows, concatenated in rank order.  Backward: every rank's gradient
    for the gathered rows is summed, and each rank keeps the slice of its own rows, so an
    embedding receives the gradient of every rank's loss that used it."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        torch_dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.rows = rank, tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        torch_dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows], None, None


def all_gather_with_grad(tensor: torch.Tensor, dist: DistInfo) -> torch.Tensor:
    """Every rank's rows (same shape on every rank), differentiable; the identity for one rank."""
    if dist.world_size == 1:
        return tensor
    return _GatherWithGrad.apply(tensor, dist.rank, dist.world_size)


def all_gather_tensor(tensor: torch.Tensor, dist: DistInfo) -> torch.Tensor:
    """Every rank's rows without gradient (labels, indices)."""
    if dist.world_size == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.world_size)]
    torch_dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)
