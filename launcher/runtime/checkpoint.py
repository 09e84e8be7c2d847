"""Checkpoints: DeepSpeed's engine state plus, per rank, RNG states and the train state.

A checkpoint is written under a temporary name and renamed into place only after every
rank has finished writing, then marked complete; a run killed mid-save therefore leaves
nothing that looks complete.  ``--resume`` takes the newest complete checkpoint.
"""

from __future__ import annotations

import errno
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as torch_dist

from launcher.config.schema import CheckpointConfig
from launcher.errors import JobError
from launcher.run_dir import RunDir
from launcher.runtime.dist import DistInfo, all_gather_object, all_reduce_sum
from shards.files import write_text_atomic

if TYPE_CHECKING:  # importing deepspeed probes the accelerators: only once a process group starts
    from deepspeed import DeepSpeedEngine

log = logging.getLogger(__name__)

FORMAT = 2
"""Checkpoint layout version, in complete.json: 2 keeps a TrainState per rank and the model keys of
facetrain/backbones.py (1: the layout before 2026-12-02, no version field)."""
FULL_DISK_BYTES = 1 << 20
"""Free space under which a failed write is put down to a full disk."""


def rng_states() -> dict[str, Any]:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def write_failure(exc: BaseException, directory: Path) -> str:
    """What went wrong writing a checkpoint, in words: torch's writer reports a full disk as
    "file write failed" or "iostream error", so the free space decides."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    if shutil.disk_usage(directory).free < FULL_DISK_BYTES:
        return "no space left on device"
    return str(exc).strip().splitlines()[0]


class FailureRecordingWrites:
    """A DeepSpeed checkpoint engine around another: the first failed write (torch reports a
    full disk as a RuntimeError from its writer) is kept, later writes are skipped."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.failure: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def save(self, state_dict: Any, path: str) -> None:
        self._recorded(self.inner.save, state_dict, path)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self._recorded(self.inner.makedirs, path, exist_ok=exist_ok)

    def _recorded(self, write: Any, *args: Any, **kwargs: Any) -> None:
        if self.failure is None:
            try:
                write(*args, **kwargs)
            except (OSError, RuntimeError) as exc:
                self.failure = exc


class Checkpointer:
    """Saves and finds the checkpoints of one run directory (shared by all ranks)."""

    def __init__(self, run_dir: RunDir, config: CheckpointConfig, dist: DistInfo, resolved_config: str):
        self.run_dir, self.config, self.dist = run_dir, config, dist
        self.resolved_config = resolved_config
        """The job's resolved config as YAML, written beside every checkpoint."""

    def save(self, engine: DeepSpeedEngine, step: int, rank_state: dict[str, Any], for_stop: bool = False,
             keep: str | None = None) -> str:
        """Collective: every rank calls it at the same step.  ``for_stop``: saved because a stop
        signal reached the job, recorded in the marker so ``launch`` can tell a stop from a crash
        whoever received the signal.  ``keep``: a tag pruning must spare (the best checkpoint)."""
        started = time.monotonic()
        run_dir, tag = self.run_dir, RunDir.tag_for(step)
        staging = run_dir.staging(tag)
        if self.dist.is_main:  # leftovers of a save that was killed
            run_dir.checkpoints.mkdir(parents=True, exist_ok=True)
            for leftover in run_dir.staging_leftovers():
                shutil.rmtree(leftover, ignore_errors=True)
        torch_dist.barrier()
        failed = self._write(engine, staging, rank_state)
        failure = f"rank {self.dist.rank}: {write_failure(failed, run_dir.checkpoints)}" if failed else ""
        failures = [f for f in all_gather_object(failure, self.dist) if f]  # every rank learns of any failure
        if failures:
            self._abandon(tag, failures)
        failure = ""
        if self.dist.is_main:
            try:  # the files of the run directory can fill the disk too
                self._publish(tag, step, for_stop, keep)
            except OSError as exc:
                failure = f"rank 0: {write_failure(exc, run_dir.checkpoints)}"
        if failures := [f for f in all_gather_object(failure, self.dist) if f]:
            self._abandon(tag, failures)
        log.info("checkpoint %s saved in %.1fs", tag, time.monotonic() - started)
        return tag

    def _publish(self, tag: str, step: int, for_stop: bool, keep: str | None) -> None:
        """Rank 0: the staged checkpoint under its name, marked complete, named latest; then pruning."""
        run_dir, final = self.run_dir, self.run_dir.checkpoint(tag)
        shutil.rmtree(final, ignore_errors=True)
        run_dir.staging(tag).rename(final)
        run_dir.checkpoint_config(tag).write_text(self.resolved_config)
        marker = {"format": FORMAT, "step": step, "world_size": self.dist.world_size, "saved_at": time.time(),
                  "for_stop": for_stop}
        write_text_atomic(run_dir.marker(tag), json.dumps(marker))
        write_text_atomic(run_dir.latest, tag)
        self._prune(keep)

    def _write(self, engine: DeepSpeedEngine, staging: Path, rank_state: dict[str, Any]) -> BaseException | None:
        """This rank's files of a checkpoint; the error that stopped them, if one did.

        DeepSpeed's save ends in a barrier, so a rank must not leave it early: its writes go
        through a checkpoint engine that records the first failure and skips the rest, and the
        save runs to its end on every rank."""
        recorder = engine.checkpoint_engine = FailureRecordingWrites(engine.checkpoint_engine)
        try:
            engine.save_checkpoint(str(staging.parent), tag=staging.name, save_latest=False)
        except (OSError, RuntimeError) as exc:  # a write outside the checkpoint engine (its recovery scripts)
            torch_dist.barrier()  # the one DeepSpeed's save would have ended with
            return exc
        finally:
            engine.checkpoint_engine = recorder.inner
        if recorder.failure:
            return recorder.failure
        try:
            torch.save({"rng": rng_states(), "world_size": self.dist.world_size, **rank_state},
                       staging / RunDir.rank_state_name(self.dist.rank))
        except (OSError, RuntimeError) as exc:
            return exc
        return None

    def _abandon(self, tag: str, failures: list[str]) -> None:
        """A save some rank could not write: its partial files go, every rank stops with one line."""
        if self.dist.is_main:
            shutil.rmtree(self.run_dir.staging(tag), ignore_errors=True)
            if not self.run_dir.marker(tag).is_file():  # renamed but never marked complete
                shutil.rmtree(self.run_dir.checkpoint(tag), ignore_errors=True)
        torch_dist.barrier()
        tags = self.run_dir.complete_tags()
        kept = f"the previous checkpoint {tags[-1]} is intact" if tags else "there is no earlier checkpoint"
        room = (f"; checkpoint.keep_last {self.config.keep_last} needs room for {self.config.keep_last + 1} "
                "checkpoints while one is written") if self.config.keep_last else ""
        raise JobError(f"checkpoint {tag} could not be written in {self.run_dir.checkpoints} ({failures[0]}); the "
                       f"partial files were removed and {kept}{room}; make room, then continue with --resume")

    def load(self, engine: DeepSpeedEngine, tag: str) -> dict[str, Any]:
        """Restore engine state from ``tag``; returns this rank's saved state (RNG restored)."""
        path = self.run_dir.checkpoint(tag)
        marker = self.run_dir.read_marker(tag)
        if marker.get("format", 1) != FORMAT:
            raise JobError(f"{path}: a checkpoint of layout {marker.get('format', 1)} (an earlier version of this "
                           f"framework); this version reads layout {FORMAT}: resume it with the version that wrote "
                           "it, or start a new run_dir")
        saved_world = marker["world_size"]
        if saved_world != self.dist.world_size:
            raise JobError(
                f"{path}: checkpoint was written by {saved_world} processes, this run has "
                f"{self.dist.world_size}; resume with {saved_world} processes or start a new run_dir"
            )
        load_path, _ = engine.load_checkpoint(str(self.run_dir.checkpoints), tag=tag)
        if load_path is None:
            raise JobError(f"{path}: DeepSpeed found no loadable checkpoint in it")
        rank_state = torch.load(self.run_dir.rank_state(tag, self.dist.rank), weights_only=False)
        restore_rng_states(rank_state.pop("rng"))
        log.info("resumed from %s", path)
        return rank_state

    def load_newest(self, engine: DeepSpeedEngine) -> dict[str, Any]:
        """Restore the newest checkpoint that every rank can read; one that is damaged (a
        truncated or corrupt file) is skipped with a warning in favour of the one before.
        Returns this rank's saved state, or {} when there is no checkpoint."""
        tags = self.run_dir.complete_tags()
        for tag in reversed(tags):
            try:
                rank_state, failure = self.load(engine, tag), ""
            except JobError:
                raise
            except Exception as exc:  # torch.load / zip / pickle errors of a damaged file
                rank_state, failure = {}, f"{type(exc).__name__}: {exc}"
            if failure:
                log.warning("%s: unreadable on rank %d (%s)", self.run_dir.checkpoint(tag), self.dist.rank, failure)
            failed = int(all_reduce_sum(torch.tensor([float(bool(failure))]), self.dist).item())
            if not failed:  # the ranks agree, or they would resume from different steps
                return rank_state
            if self.dist.is_main:
                log.warning("checkpoint %s unreadable on %d rank(s); falling back to the previous one", tag, failed)
        if tags:
            raise JobError(f"{self.run_dir.checkpoints}: none of the {len(tags)} complete checkpoints can be read")
        return {}

    def _prune(self, keep: str | None) -> None:
        if self.config.keep_last <= 0:
            return
        for tag in self.run_dir.complete_tags()[: -self.config.keep_last]:
            if tag != keep:
                shutil.rmtree(self.run_dir.checkpoint(tag), ignore_errors=True)
