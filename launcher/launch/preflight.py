"""Everything ``launch`` can check before it starts a process: one line each, naming the file.

Value ranges are checked when the config is loaded; here the job's state and data: the run
directory (a run in it already, the resume's world size), the ``init_from`` source, the task's
shards (``TaskConfig.check_inputs``) and the room for the next checkpoint (a warning).
"""

from __future__ import annotations

import shutil
import sys

from launcher.config.schema import JobConfig
from launcher.errors import JobError
from launcher.launch.cluster import ClusterConfig, nodes_range
from launcher.run_dir import RunDir, source_checkpoint
from shards.manifest import ManifestError

DISK_MARGIN = 1.1
"""Free space wanted for the next checkpoint, as a multiple of the newest one's size."""


def check_data(job: JobConfig) -> None:
    """The task's shards: before the run directory is touched."""
    try:
        job.task.check_inputs()
    except (ManifestError, ValueError) as exc:
        raise JobError(str(exc)) from None


def check_run_dir(job: JobConfig, cluster: ClusterConfig, run_dir: RunDir, resume: bool, fresh: bool,
                  nproc: int) -> None:
    """The run directory's state, under its lock: a run in it already, the resume's world size and
    the room for its next checkpoint; the ``init_from`` source."""
    existing = run_dir.existing_checkpoint_error()
    if existing and not (resume or fresh):
        raise existing
    resuming = resume and bool(run_dir.complete_tags())
    if job.train.init_from and not resuming:
        source_checkpoint(job.train.init_from)
    if resuming:
        tag = run_dir.complete_tags()[-1]
        check_world_size(run_dir, tag, planned_world_size(cluster, nproc))
        warn_if_disk_is_short(run_dir, tag, job.checkpoint.keep_last)


def planned_world_size(cluster: ClusterConfig, nproc: int) -> int | None:
    """The job's process count where the plan fixes it (not an elastic range or a hostfile's)."""
    low, high = nodes_range(cluster.nnodes)
    if low != high or cluster.launcher == "slurm" or cluster.hostfile:
        return None
    return low * nproc


def check_world_size(run_dir: RunDir, tag: str, world_size: int | None) -> None:
    saved = run_dir.read_marker(tag).get("world_size")
    if world_size is not None and saved is not None and saved != world_size:
        raise JobError(f"{run_dir.checkpoint(tag)}: saved by {saved} processes, this start plans {world_size}; "
                       f"resume with {saved} (--nproc / --nnodes) or start a new run_dir")


def warn_if_disk_is_short(run_dir: RunDir, tag: str, keep_last: int) -> None:
    """Pruning follows a save, so the next checkpoint needs room beside the ones kept."""
    size = sum(f.stat().st_size for f in run_dir.checkpoint(tag).rglob("*") if f.is_file())
    free = shutil.disk_usage(run_dir.checkpoints).free
    if free < DISK_MARGIN * size:
        kept = f"checkpoint.keep_last {keep_last} keeps {keep_last} while the next is written" if keep_last else ""
        print(f"warning: {run_dir.checkpoints}: {free / 2**30:.2f} GiB free, the newest checkpoint took "
              f"{size / 2**30:.2f} GiB; the next save may fail for lack of space{'; ' + kept if kept else ''}",
              file=sys.stderr, flush=True)
