"""Worker entry point: one process of a job, as started by torchrun or the deepspeed launcher.

    torchrun --nproc_per_node 2 -m launcher.runtime.train configs/face/demo.yaml [--set k=v] [--resume]

Users normally start it through ``launch`` (``launcher.launch.cli``), which validates the config
before any process is spawned.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import sys
import warnings
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as torch_dist

from launcher.config.loader import config_yaml
from launcher.config.schema import JobConfig, load_job_config_or_report
from launcher.errors import JobError
from launcher.failures import record_failure
from launcher.monitoring.exporter import start_exporter
from launcher.monitoring.metrics import JobMetrics
from launcher.run_dir import RunDir
from launcher.run_lock import RunDirLock, held_by_launch
from launcher.runtime.checkpoint import Checkpointer
from launcher.runtime.dist import DistInfo, broadcast_object, init_distributed
from launcher.runtime.engine import build_engine, compute_dtype
from launcher.runtime.init_from import load_initial_weights
from launcher.runtime.logs import setup_logging
from launcher.runtime.loop import Loop, RunContext, StopSignal
from launcher.runtime.results import format_table
from launcher.runtime.task import Task
from launcher.runtime.train_state import TrainState
from launcher.tasks import task_class
from shards.availability import MissingData

log = logging.getLogger("launcher")

# DeepSpeed 0.19's ZeRO calls this deprecated torch API on every step; not ours to fix.
warnings.filterwarnings("ignore", message=".*all_gather_into_tensor.* is deprecated", category=FutureWarning)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m launcher.runtime.train", description=__doc__)
    parser.add_argument("config", help="job config YAML")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest complete checkpoint in run_dir, if any")
    return parser.parse_args(argv)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run(job: JobConfig, dist: DistInfo, resume: bool, stop: StopSignal) -> bool:
    """Build everything from the config and train; returns False if stopped by a signal."""
    run_dir = RunDir(job.run_dir)
    if not resume and (existing := run_dir.existing_checkpoint_error()):
        raise existing
    task: Task = task_class(job.task.name)(job.task, dist)
    seed_everything(job.train.seed)  # the same initial model on every rank
    model = task.build_model()
    if job.train.init_from and not (resume and run_dir.complete_tags()):
        source = load_initial_weights(model, job.train.init_from, job.train.init_new_keys, job.train.init_skip_keys)
        if dist.is_main:
            log.info("model weights from %s (train.init_from); fresh optimizer, schedule and step", source)
    engine = build_engine(model, job.deepspeed, job.optimizer, job.schedule, job.train.steps,
                          task.micro_batch_size, dist)
    checkpointer = Checkpointer(run_dir, job.checkpoint, dist, config_yaml(job))
    state, saved = TrainState(), checkpointer.load_newest(engine) if resume else {}
    if saved:
        state.load_state_dict(saved["train_state"])
        task.load_state_dict(state.task)
    else:
        seed_everything(job.train.seed + 1 + dist.rank)  # per-rank streams (dropout, augment)
    ctx = RunContext(
        task=task, engine=engine, stream=task.train_batches(state.reader), checkpointer=checkpointer, dist=dist,
        run_dir=run_dir, train=job.train, checkpoint=job.checkpoint, compute_dtype=compute_dtype(job.deepspeed),
        metrics=JobMetrics(cuda=dist.device.type == "cuda"),
        summary={"task": job.task.name, "world_size": dist.world_size, "target_steps": job.train.steps,
                 "data": task.summary()},
    )
    if dist.is_main:
        run_dir.root.mkdir(parents=True, exist_ok=True)
        run_dir.config.write_text(config_yaml(job))
        log.info("task %s, %d process(es) on %s, from step %d to %d", job.task.name,
                 dist.world_size, dist.device.type, state.step, job.train.steps)
    ctx.metrics.started(job.task.name, dist.world_size, state.step, job.train.steps)
    exporter, ended_cleanly = start_exporter(job.metrics, ctx.metrics, dist, run_dir), False
    try:
        finished = Loop(ctx, state, stop, resumed=bool(saved)).run()
        ended_cleanly = True
    finally:
        ctx.stream.close()
        if exporter:
            exporter.close(leave_targets=ended_cleanly)  # a crashed job stays listed: its targets go down
    if dist.is_main and finished:
        print(f"\nresults ({run_dir.results})\n{format_table(state.evaluations)}", flush=True)
    return finished


@contextlib.contextmanager
def run_dir_held(run_dir: RunDir, dist: DistInfo) -> Iterator[None]:
    """The run directory's lock, for a job started without ``launch`` (which holds it otherwise):
    rank 0 takes it, and every rank learns whether it did, so all stop with the same line."""
    if held_by_launch(os.environ):
        yield
        return
    lock = RunDirLock(run_dir, "rank 0 of a job started without launch")
    error = None
    if dist.is_main:
        try:
            lock.acquire()
        except JobError as exc:
            error = str(exc)
    if error := broadcast_object(error, dist):
        raise JobError(error)
    try:
        yield
    finally:
        lock.release()


def lost_a_peer(exc: Exception) -> bool:
    """A collective that failed because another process went away (gloo raises a plain
    RuntimeError from its TCP transport; NCCL and the stores raise DistError)."""
    return isinstance(exc, torch_dist.DistError) or (
        isinstance(exc, RuntimeError) and "gloo" in str(exc) and "peer" in str(exc))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # First of all: a stop signal during start-up (rendezvous, building the engine, loading the
    # checkpoint) is heeded at the first step boundary instead of killing the process.
    stop = StopSignal()
    job = load_job_config_or_report(args.config, args.set)
    if job is None:
        return 2
    dist = init_distributed()
    setup_logging(dist.rank)
    # torchrun restarts the whole group after a failure with the same arguments; a restarted
    # group must continue from the newest checkpoint, whatever the first launch said.
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if restart and dist.is_main:
        log.warning("worker group restart %d: resuming from the newest complete checkpoint", restart)
    run_dir = RunDir(job.run_dir)
    try:
        with run_dir_held(run_dir, dist):
            run(job, dist, args.resume or restart > 0, stop)
        return 0
    except (JobError, MissingData) as exc:  # MissingData: more of the data lost while training than allowed
        log.error("%s", exc)
        record_failure(run_dir, dist.rank, str(exc), after_a_peer_died=False)
        return 2
    except KeyboardInterrupt:
        log.error("rank %d: aborted by a second SIGINT, without a checkpoint", dist.rank)
        return 130
    except Exception as exc:
        first_line = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        if lost_a_peer(exc):
            log.error("rank %d: a collective failed, most likely because another process of the job died "
                      "(torchrun restarts the group when max_restarts allows): %s", dist.rank, first_line)
        else:
            log.exception("rank %d failed", dist.rank)
        record_failure(run_dir, dist.rank, first_line, after_a_peer_died=lost_a_peer(exc))
        return 1
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
