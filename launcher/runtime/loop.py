"""The one training loop, over any Task.

The engine owns backward, the optimizer step, checkpoints and evaluation; the task only
computes a loss.  Ranks agree on every decision that changes control flow (skip a
non-finite step, stop for a signal) through one tiny all-reduce per micro-batch, so no
rank can wait in a collective that another rank skipped; that all-reduce is also the one
host synchronisation per micro-batch (statistics stay on the device until a log line).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from launcher.config.schema import CheckpointConfig, TrainConfig
from launcher.errors import JobError
from launcher.monitoring.metrics import JobMetrics
from launcher.run_dir import RunDir
from launcher.runtime.checkpoint import Checkpointer, restore_rng_states, rng_states
from launcher.runtime.dist import DistInfo, all_reduce_sum, broadcast_buffers, broadcast_object
from launcher.runtime.results import format_table, write_results
from launcher.runtime.selection import BestTracker, EarlyStopper
from launcher.runtime.task import BatchStream, Task
from launcher.runtime.train_state import TrainState
from launcher.stops import ABORT_WINDOW_S, SIGNALS

if TYPE_CHECKING:
    from deepspeed import DeepSpeedEngine

log = logging.getLogger(__name__)


class NonFiniteLossError(JobError):
    """Too many consecutive non-finite losses: the run cannot make progress."""


@dataclass
class RunContext:
    """Everything the loop works with, built once by ``launcher.runtime.train``."""

    task: Task
    engine: DeepSpeedEngine
    stream: BatchStream
    checkpointer: Checkpointer
    dist: DistInfo
    run_dir: RunDir
    train: TrainConfig
    checkpoint: CheckpointConfig
    compute_dtype: torch.dtype
    metrics: JobMetrics
    summary: dict[str, Any]
    """Fixed fields of results.json (task, world size, target steps)."""


class StopSignal:
    """A stop signal (launcher/stops.py), whoever received it first (``launch``, torchrun's agent and
    ``launch`` pass them on), asks for a checkpoint at the next step and a clean exit.  A second
    SIGINT within ABORT_WINDOW_S seconds aborts at once, without a checkpoint.  The parent going
    away (torchrun's agent killed) asks for a stop too: the job checkpoints instead of training on
    as orphans."""

    PARENT_POLL_S = 1.0

    def __init__(self) -> None:
        self.requested = False
        self._interrupted_at = -math.inf
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        parent = os.getppid()
        threading.Thread(target=self._watch_parent, args=(parent,), name="parent-watch", daemon=True).start()

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT:
            if time.monotonic() - self._interrupted_at < ABORT_WINDOW_S:
                raise KeyboardInterrupt
            self._interrupted_at = time.monotonic()
        self.requested = True

    def _watch_parent(self, parent: int) -> None:
        while os.getppid() == parent:
            time.sleep(self.PARENT_POLL_S)
        log.warning("the process that started this one (pid %d) is gone: checkpointing and stopping", parent)
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
    flags = torch.stack([(~torch.isfinite(loss.detach())).float().reshape(()),
                         torch.tensor(float(stop_requested), device=loss.device)])
    flags = all_reduce_sum(flags, dist).tolist()
    return int(flags[0]), bool(flags[1])


class StatsWindow:
    """Loss, task statistics and time of the training micro-steps between two log lines, kept
    on the device; reduced over ranks (one all-reduce, together with the reader's counters)
    only when the loop logs.

    Throughput counts only time spent fetching, computing and stepping, so evaluation and
    checkpoint pauses do not masquerade as slow training.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.seconds = 0.0

    def add(self, loss: torch.Tensor, stats: dict[str, torch.Tensor], seconds: float) -> None:
        if self.sums and self.sums.keys() != {"loss", *stats}:  # the reduce needs the same keys everywhere
            before = sorted(set(self.sums) - {"loss"})
            raise ValueError(f"task.step returned statistics {sorted(stats)} after {before}: a task must return "
                             "the same statistics at every step")
        for key, value in {"loss": loss, **stats}.items():
            value = value.detach().float().reshape(())
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += 1
        self.seconds += seconds

    def reduce(self, micro_batch_size: int, dist: DistInfo) -> dict[str, float]:
        """Means over the window and the ranks, plus samples/s of the whole job."""
        keys = sorted(self.sums)
        window = torch.tensor([self.count, self.seconds], dtype=torch.float64, device=self.sums["loss"].device)
        local = torch.cat([torch.stack([self.sums[k] for k in keys]).double(), window])
        *sums, count, seconds = all_reduce_sum(local, dist).tolist()  # the window's one host sync
        means = {k: total / count for k, total in zip(keys, sums, strict=True)}
        means["samples_per_second"] = micro_batch_size * count / (seconds / dist.world_size)
        self.reset()
        return means


def reduce_counters(counters: dict[str, float], dist: DistInfo) -> dict[str, float]:
    """Counters summed over ranks; ``peak_*`` values, and ``missing_*`` (a property of the data,
    the same on every rank), their maximum.  Every rank passes the same keys."""
    keys = sorted(counters)
    values = torch.tensor([counters[k] for k in keys], dtype=torch.float64)
    peaks = torch.tensor([k.startswith(("peak_", "missing_")) for k in keys])
    # one all-reduce: a sum, and the maximum as the sum of one-hot rank slots
    slots = torch.zeros(dist.world_size, len(keys), dtype=torch.float64)
    slots[dist.rank] = values
    gathered = all_reduce_sum(torch.cat([values[None], slots]), dist)
    totals = torch.where(peaks, gathered[1:].max(0).values, gathered[0])
    return dict(zip(keys, totals.tolist(), strict=True))


def reduce_coverage(coverage: dict[str, torch.Tensor], dist: DistInfo) -> dict[str, float]:
    """Share of each 0/1 set that some rank saw (a union over ranks)."""
    shares = {}
    for name in sorted(coverage):
        seen = all_reduce_sum(coverage[name].to(torch.float32), dist)
        shares[name] = float((seen > 0).float().mean()) if seen.numel() else 0.0
    return shares


class Loop:
    """``run()`` trains until ``train.steps`` (or an early stop); returns False when a stop
    signal ended it (after a checkpoint)."""

    def __init__(self, ctx: RunContext, state: TrainState, stop: StopSignal, resumed: bool):
        self.ctx, self.state, self.stop = ctx, state, stop
        self.best = BestTracker(ctx.checkpoint.keep_best, state)
        self.early_stop = EarlyStopper(ctx.train.early_stop, state)
        self.window = StatsWindow()
        self.last_checkpoint_step = state.step if resumed else -1
        self.epoch = ctx.stream.epoch

    def run(self) -> bool:
        ctx, state, train = self.ctx, self.state, self.ctx.train
        if train.eval_at_start and state.step == 0 and not state.evaluations:
            self.evaluate()
        ctx.engine.train()
        bar = tqdm(total=train.steps, initial=state.step, disable=not ctx.dist.is_main, unit="step")
        in_a_row = 0
        while state.step < train.steps and not state.stopped_early:
            started = time.monotonic()
            batch = move_batch(next(ctx.stream), ctx.dist.device, ctx.compute_dtype)
            fetched = time.monotonic()
            loss, stats = ctx.task.step(ctx.engine, batch)
            nonfinite_ranks, stop_now = agree(loss, self.stop.requested, ctx.dist)
            self.reduce_epoch_coverage()
            if nonfinite_ranks:
                in_a_row += 1
                self.skip_nonfinite(nonfinite_ranks, in_a_row)
                continue
            in_a_row = 0
            ctx.engine.backward(loss)
            ctx.engine.step()
            self.window.add(loss, stats, time.monotonic() - started)
            ctx.metrics.micro_step(ctx.task.micro_batch_size, time.monotonic() - started, fetched - started)
            if ctx.engine.global_steps == state.step:  # inside a gradient-accumulation window
                continue
            state.step = ctx.engine.global_steps
            ctx.metrics.optimizer_step(state.step, ctx.engine.get_lr()[0], ctx.stream, ctx.dist.device)
            bar.update(1)
            if state.step % train.log_every == 0:
                self.log(bar)
            if state.step == train.steps or (train.eval_every and state.step % train.eval_every == 0):
                self.evaluate()  # before the step's checkpoint, which then holds it
            stopping = stop_now and state.step < train.steps and not state.stopped_early  # else it is done anyway
            every = ctx.checkpoint.every_steps
            if stopping or (every and state.step % every == 0 and self.last_checkpoint_step != state.step):
                self.save(for_stop=stopping)  # a stop re-marks a checkpoint this step already has
            if stopping:
                bar.close()
                log.warning("stop signal: checkpoint saved at step %d, exiting", state.step)
                return False
        bar.close()
        if state.last_eval_step != state.step:
            self.evaluate()
        if self.last_checkpoint_step != state.step:
            self.save()
        return True

    def skip_nonfinite(self, ranks: int, in_a_row: int) -> None:
        ctx, state = self.ctx, self.state
        state.nonfinite_skipped += 1
        ctx.metrics.skipped_nonfinite()
        if ctx.dist.is_main:
            log.warning("non-finite loss on %d of %d ranks at step %d: skipped (%d in a row)",
                        ranks, ctx.dist.world_size, state.step, in_a_row)
        if in_a_row >= ctx.train.max_nonfinite_in_a_row:
            raise NonFiniteLossError(f"{in_a_row} non-finite losses in a row at step {state.step}: lower "
                                     "optimizer.lr, check the input data, or use precision fp32")

    def log(self, bar: tqdm) -> None:
        ctx = self.ctx
        means = self.window.reduce(ctx.task.micro_batch_size, ctx.dist)
        ctx.metrics.logged(means)
        bar.set_postfix(loss=f"{means['loss']:.4f}")
        if ctx.dist.is_main:
            log.info("step %d/%d lr %.3g %s", self.state.step, ctx.train.steps, ctx.engine.get_lr()[0],
                     _fmt_stats(means))

    def reduce_epoch_coverage(self) -> None:
        """At an epoch boundary (the same batch on every rank): what the job saw of the data."""
        ctx = self.ctx
        if ctx.stream.epoch == self.epoch:
            return
        self.epoch = ctx.stream.epoch
        coverage = ctx.stream.epoch_coverage()
        if coverage is not None:
            shares = reduce_coverage(coverage, ctx.dist)
            if ctx.dist.is_main:
                log.info("reader epoch %d: %s", self.epoch - 1,
                         ", ".join(f"{100 * v:.1f}% of {k} seen" for k, v in shares.items()))

    def evaluate(self) -> None:
        """Evaluate now; a new best checkpoint or an early stop is saved at once, before
        results.json names it."""
        ctx, state = self.ctx, self.state
        broadcast_buffers(ctx.engine.module, ctx.dist)  # every rank evaluates the model a checkpoint keeps
        ctx.engine.eval()
        # The random streams training draws from (dropout, ...) come out of an evaluation as they
        # went in: a DataLoader draws a seed from them, and a resumed run, which does not repeat
        # the evaluation at its checkpoint's step, must draw what the uninterrupted run drew.
        random_streams = rng_states()
        # Rank 0's figures on every rank: every decision drawn from them (best checkpoint, early
        # stop) is then the same everywhere, even if the ranks' float arithmetic differed.
        metrics = broadcast_object(ctx.task.evaluate(ctx.engine, state.step, ctx.run_dir.plots), ctx.dist)
        restore_rng_states(random_streams)
        ctx.engine.train()
        state.evaluations.append({"step": state.step, "metrics": metrics})
        ctx.metrics.evaluated(state.step, metrics)
        reader = reduce_counters(ctx.stream.stats(), ctx.dist)
        new_best = self.best.update(state.step, metrics)
        stop_early = self.early_stop.update(state.step, metrics)
        if stop_early and ctx.dist.is_main:
            log.warning("early stop at step %d: %s", state.step, state.stopped_early["reason"])
        if (new_best or stop_early) and self.last_checkpoint_step != state.step:
            self.save()
        if ctx.dist.is_main:
            self.write_results(reader)
            tqdm.write(f"\nevaluation at step {state.step}\n{format_table(state.evaluations[-1:])}\n")

    def save(self, for_stop: bool = False) -> None:
        ctx, state = self.ctx, self.state
        started = time.monotonic()
        broadcast_buffers(ctx.engine.module, ctx.dist)  # the checkpoint holds rank 0's; so does every rank now
        state.reader = ctx.stream.state_dict()
        state.task = ctx.task.state_dict()
        ctx.checkpointer.save(ctx.engine, state.step, {"train_state": state.state_dict()}, for_stop,
                              keep=self.best.tag)
        self.last_checkpoint_step = state.step
        ctx.metrics.checkpoint_saved(time.monotonic() - started)

    def write_results(self, reader: dict[str, float]) -> None:
        state = self.state
        summary = {**self.ctx.summary, "steps": state.step, "nonfinite_skipped": state.nonfinite_skipped,
                   "reader": reader, "best": state.best, "stopped_early": state.stopped_early}
        write_results(self.ctx.run_dir.results, summary, state.evaluations)


def _fmt_stats(stats: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" if math.isfinite(v) else f"{k} {v}" for k, v in stats.items())
