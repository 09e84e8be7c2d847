"""Checkpoints: DeepSpeed's engine state plus, per rank, RNG states and the reader position.

A checkpoint is written under a temporary name and renamed into place only after every
rank has finished writing, then marked complete; a run killed mid-save therefore leaves
nothing that looks complete.  ``--resume`` takes the newest complete checkpoint.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist

from launcher.config import dump_config
from launcher.dist import DistInfo, all_reduce_sum
from launcher.errors import JobError

log = logging.getLogger(__name__)

_TAG = re.compile(r"^step(\d{8})$")
COMPLETE_MARKER = "complete.json"


def tag_for(step: int) -> str:
    return f"step{step:08d}"


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


def complete_tags(directory: Path) -> list[str]:
    """Tags of complete checkpoints in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    tags = [p.name for p in directory.iterdir() if _TAG.match(p.name) and (p / COMPLETE_MARKER).is_file()]
    return sorted(tags)


def read_marker(directory: Path, tag: str) -> dict[str, Any]:
    return json.loads((Path(directory) / tag / COMPLETE_MARKER).read_text())


def existing_checkpoint_error(run_dir: Path) -> JobError | None:
    """The error for starting a new run in a run_dir that holds one already, if it does."""
    tags = complete_tags(Path(run_dir) / "checkpoints")
    if not tags:
        return None
    return JobError(
        f"{run_dir}: already holds checkpoint {tags[-1]}; pass --resume to continue that run, "
        "--fresh (launch) to start over, or choose another run_dir"
    )


class Checkpointer:
    """Saves and finds checkpoints in ``directory`` (shared by all ranks)."""

    def __init__(self, directory: Path, keep_last: int, dist: DistInfo):
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.dist = dist

    def save(self, engine, step: int, rank_state: dict[str, Any], job: Any, for_stop: bool = False) -> str:
        """Collective: every rank calls it at the same step.  ``for_stop``: saved because a stop
        signal reached the job, recorded in the marker so ``launch`` can tell a stop from a crash
        whoever received the signal."""
        started = time.monotonic()
        tag = tag_for(step)
        staging = f"{tag}.partial"
        if self.dist.is_main:  # leftovers of a save that was killed
            self.directory.mkdir(parents=True, exist_ok=True)
            for leftover in self.directory.glob("*.partial"):
                shutil.rmtree(leftover, ignore_errors=True)
        torch_dist.barrier()
        engine.save_checkpoint(str(self.directory), tag=staging, save_latest=False)
        torch.save(
            {"rng": rng_states(), "world_size": self.dist.world_size, **rank_state},
            self.directory / staging / f"rank{self.dist.rank:05d}.pt",
        )
        torch_dist.barrier()
        if self.dist.is_main:
            final = self.directory / tag
            shutil.rmtree(final, ignore_errors=True)
            (self.directory / staging).rename(final)
            dump_config(job, final / "config.yaml")
            marker = {"step": step, "world_size": self.dist.world_size, "saved_at": time.time(), "for_stop": for_stop}
            (final / COMPLETE_MARKER).write_text(json.dumps(marker))
            (self.directory / "latest").write_text(tag)
            self._prune()
        torch_dist.barrier()
        log.info("checkpoint %s saved in %.1fs", tag, time.monotonic() - started)
        return tag

    def load(self, engine, tag: str) -> dict[str, Any]:
        """Restore engine state from ``tag``; returns this rank's saved state (RNG restored)."""
        path = self.directory / tag
        saved_world = read_marker(self.directory, tag)["world_size"]
        if saved_world != self.dist.world_size:
            raise JobError(
                f"{path}: checkpoint was written by {saved_world} processes, this run has "
                f"{self.dist.world_size}; resume with {saved_world} processes or start a new run_dir"
            )
        load_path, _ = engine.load_checkpoint(str(self.directory), tag=tag)
        if load_path is None:
            raise JobError(f"{path}: DeepSpeed found no loadable checkpoint in it")
        rank_state = torch.load(path / f"rank{self.dist.rank:05d}.pt", weights_only=False)
        restore_rng_states(rank_state.pop("rng"))
        log.info("resumed from %s", path)
        return rank_state

    def load_newest(self, engine) -> dict[str, Any]:
        """Restore the newest checkpoint that every rank can read; one that is damaged (a
        truncated or corrupt file) is skipped with a warning in favour of the one before.
        Returns this rank's saved state, or {} when there is no checkpoint."""
        tags = complete_tags(self.directory)
        for tag in reversed(tags):
            try:
                rank_state, failure = self.load(engine, tag), ""
            except JobError:
                raise
            except Exception as exc:  # torch.load / zip / pickle errors of a damaged file
                rank_state, failure = {}, f"{type(exc).__name__}: {exc}"
            if failure:
                log.warning("%s: unreadable on rank %d (%s)", self.directory / tag, self.dist.rank, failure)
            failed = int(all_reduce_sum(torch.tensor([float(bool(failure))]), self.dist).item())
            if not failed:  # the ranks agree, or they would resume from different steps
                return rank_state
            if self.dist.is_main:
                log.warning("checkpoint %s unreadable on %d rank(s); falling back to the previous one", tag, failed)
        if tags:
            raise JobError(f"{self.directory}: none of the {len(tags)} complete checkpoints can be read")
        return {}

    def _prune(self) -> None:
        if self.keep_last <= 0:
            return
        for tag in complete_tags(self.directory)[: -self.keep_last]:
            shutil.rmtree(self.directory / tag, ignore_errors=True)
