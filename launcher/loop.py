"""The one training loop, over any Task.

The engine owns backward, the optimizer step, checkpoints and evaluation; the task only
computes a loss.  Ranks agree on every decision that changes control flow (skip a
non-finite step, stop for a signal) through one tiny all-reduce per micro-batch, so no
rank can wait in a collective that another rank skipped.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from launcher.checkpoint import Checkpointer
from launcher.dist import DistInfo, all_reduce_sum
from launcher.errors import JobError
from launcher.metrics import JobMetrics
from launcher.results import format_table, write_results

log = logging.getLogger(__name__)


class NonFiniteLossError(JobError):
    """Too many consecutive non-finite losses: the run cannot make progress."""


@dataclass
class LoopState:
    step: int = 0
    """Optimizer steps completed."""
    nonfinite_skipped: int = 0
    last_checkpoint_step: int = -1
    last_eval_step: int = -1


@dataclass
class RunContext:
    """Everything the loop works with, built once by ``launcher.train``."""

    job: Any
    task: Any
    engine: Any
    stream: Any
    checkpointer: Checkpointer
    dist: DistInfo
    run_dir: Path
    compute_dtype: torch.dtype
    metrics: JobMetrics
    evaluations: list[dict[str, Any]] = field(default_factory=list)


class StopSignal:
    """SIGTERM (schedulers), SIGUSR1 (SLURM's pre-emption warning) or SIGHUP (the terminal went
    away; ``launch`` and torchrun's agent pass it on) asks for a checkpoint and a clean exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP)

    def __init__(self) -> None:
        self.requested = False
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True


def move_batch(batch: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Batch tensors onto the device; floating ones in the engine's compute precision."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        return batch.to(dtype) if batch.is_floating_point() else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_batch(b, device, dtype) for b in batch)
    if isinstance(batch, dict):
        return {k: move_batch(v, device, dtype) for k, v in batch.items()}
    return batch


def agree(loss: torch.Tensor, stop_requested: bool, dist: DistInfo) -> tuple[int, bool]:
    """(how many ranks have a non-finite loss, whether any rank was asked to stop)."""
    flags = torch.tensor([float(not torch.isfinite(loss).item()), float(stop_requested)])
    flags = all_reduce_sum(flags, dist)
    return int(flags[0]), bool(flags[1])


class StatsWindow:
    """Loss, task stats and time in training micro-steps between two log lines.

    Throughput counts only time spent fetching, computing and stepping, so evaluation and
    checkpoint pauses do not masquerade as slow training.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.seconds = 0.0

    def add(self, loss: float, stats: dict[str, float], seconds: float) -> None:
        for key, value in {"loss": loss, **stats}.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1
        self.seconds += seconds

    def reduce(self, micro_batch_size: int, dist: DistInfo) -> dict[str, float]:
        """Means over the window and over ranks, plus samples/s of the whole job."""
        keys = sorted(self.sums)
        local = [self.sums[k] for k in keys] + [self.count, self.seconds]
        totals = all_reduce_sum(torch.tensor(local, dtype=torch.float64), dist).tolist()
        *sums, count, seconds = totals
        means = {k: total / count for k, total in zip(keys, sums, strict=True)}
        means["samples_per_second"] = micro_batch_size * count / (seconds / dist.world_size)
        self.reset()
        return means


def evaluate(ctx: RunContext, state: LoopState) -> None:
    ctx.engine.eval()
    with torch.no_grad():
        metrics = ctx.task.evaluate(ctx.engine, ctx.dist, ctx.run_dir)
    ctx.engine.train()
    state.last_eval_step = state.step
    ctx.evaluations.append({"step": state.step, "metrics": metrics})
    ctx.metrics.evaluated(state.step, metrics)
    if ctx.dist.is_main:
        write_results(ctx.run_dir / "results.json", summary(ctx, state), ctx.evaluations)
        tqdm.write(f"\nevaluation at step {state.step}\n{format_table(ctx.evaluations[-1:])}\n")


def save_checkpoint(ctx: RunContext, state: LoopState, for_stop: bool = False) -> None:
    started = time.monotonic()
    rank_state = {"reader": ctx.stream.state_dict(), "nonfinite_skipped": state.nonfinite_skipped}
    ctx.checkpointer.save(ctx.engine, state.step, rank_state, ctx.job, for_stop)
    state.last_checkpoint_step = state.step
    ctx.metrics.checkpoint_saved(time.monotonic() - started)


def summary(ctx: RunContext, state: LoopState) -> dict[str, Any]:
    return {
        "task": ctx.job.task.name,
        "world_size": ctx.dist.world_size,
        "steps": state.step,
        "target_steps": ctx.job.train.steps,
        "nonfinite_skipped": state.nonfinite_skipped,
    }


def run_training(ctx: RunContext, state: LoopState, stop: StopSignal) -> bool:
    """Train until ``train.steps``; returns False if a stop signal ended it early (saved)."""
    train, engine = ctx.job.train, ctx.engine
    window, in_a_row = StatsWindow(), 0
    if train.eval_at_start and state.step == 0:
        evaluate(ctx, state)
    engine.train()
    bar = tqdm(total=train.steps, initial=state.step, disable=not ctx.dist.is_main, unit="step")
    while state.step < train.steps:
        started = time.monotonic()
        batch = move_batch(next(ctx.stream), ctx.dist.device, ctx.compute_dtype)
        fetched = time.monotonic()
        loss, stats = ctx.task.step(engine, batch)
        nonfinite_ranks, stop_now = agree(loss.detach().float(), stop.requested, ctx.dist)
        if nonfinite_ranks:
            state.nonfinite_skipped += 1
            ctx.metrics.skipped_nonfinite()
            in_a_row += 1
            if ctx.dist.is_main:
                log.warning("non-finite loss on %d of %d ranks at step %d: skipped (%d in a row)",
                            nonfinite_ranks, ctx.dist.world_size, state.step, in_a_row)
            if in_a_row >= train.max_nonfinite_in_a_row:
                raise NonFiniteLossError(
                    f"{in_a_row} non-finite losses in a row at step {state.step}: lower "
                    "optimizer.lr, check the input data, or use precision fp32"
                )
            continue
        in_a_row = 0
        engine.backward(loss)
        engine.step()
        loss_value, seconds = loss.item(), time.monotonic() - started
        window.add(loss_value, stats, seconds)
        ctx.metrics.micro_step(ctx.task.micro_batch_size, loss_value, stats, seconds, fetched - started)
        if engine.global_steps == state.step:  # inside a gradient-accumulation window
            continue
        state.step = engine.global_steps
        ctx.metrics.optimizer_step(state.step, engine.get_lr()[0], ctx.stream, ctx.dist.device)
        bar.update(1)
        if state.step % train.log_every == 0:
            means = window.reduce(ctx.task.micro_batch_size, ctx.dist)
            bar.set_postfix(loss=f"{means['loss']:.4f}")
            if ctx.dist.is_main:
                lr = engine.get_lr()[0]
                log.info("step %d/%d lr %.3g %s", state.step, train.steps, lr, _fmt_stats(means))
        if train.eval_every and state.step % train.eval_every == 0:
            evaluate(ctx, state)
        every = ctx.job.checkpoint.every_steps
        if stop_now or (every and state.step % every == 0):
            save_checkpoint(ctx, state, for_stop=stop_now)
        if stop_now:
            bar.close()
            log.warning("stop signal: checkpoint saved at step %d, exiting", state.step)
            return False
    bar.close()
    if state.last_eval_step != state.step:
        evaluate(ctx, state)
    if state.last_checkpoint_step != state.step:
        save_checkpoint(ctx, state)
    return True


def _fmt_stats(stats: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" if math.isfinite(v) else f"{k} {v}" for k, v in stats.items())
