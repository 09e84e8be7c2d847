"""Every path inside a run directory, in one place.

    <run_dir>/
        config.yaml                  the resolved job config of the latest start
        run.lock                     flock'd by the job running here (launcher/run_lock.py)
        results.json                 every evaluation, the summary, the best checkpoint
        <plots>.png                  the task's pictures (roc.png, ...), beside results.json
        checkpoints/
            stepNNNNNNNN/            DeepSpeed's files, rankNNNNN.pt per rank, config.yaml, complete.json
            stepNNNNNNNN.partial/    a checkpoint being written (renamed when every rank is done)
            latest                   the newest tag (DeepSpeed's convention)
        launch/.deepspeed_env        variables the deepspeed launcher forwards to other nodes
        launch/failures/rankNNNNN.json   what a rank recorded when it failed (launcher/failures.py)
        slurm/job.sbatch             the script `launch` writes for SLURM
    <run_dir>/../prometheus_targets/<run name>.json    file-SD targets, while the job runs

Torch-free: the launch side (``launch``, supervision) and the runtime both ask it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from launcher.errors import JobError

_TAG = re.compile(r"^step(\d{8})$")


class RunDir:
    COMPLETE_MARKER = "complete.json"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def name(self) -> str:
        return self.root.resolve().name

    # Files of the run.
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def lock(self) -> Path:
        return self.root / "run.lock"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def plots(self) -> Path:
        """Where a task writes its pictures."""
        return self.root

    def prometheus_targets(self, job_name: str) -> Path:
        """Default file-SD targets: beside the run directory, so one Prometheus watches every run."""
        return self.root.resolve().parent / "prometheus_targets" / f"{job_name}.json"

    @property
    def deepspeed_env(self) -> Path:
        return self.root / "launch" / ".deepspeed_env"

    @property
    def failures(self) -> Path:
        return self.root / "launch" / "failures"

    def failure_record(self, rank: int) -> Path:
        return self.failures / f"rank{rank:05d}.json"

    @property
    def sbatch_script(self) -> Path:
        return self.root / "slurm" / "job.sbatch"

    # Checkpoints.
    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @staticmethod
    def tag_for(step: int) -> str:
        return f"step{step:08d}"

    def checkpoint(self, tag: str) -> Path:
        return self.checkpoints / tag

    def staging(self, tag: str) -> Path:
        return self.checkpoints / f"{tag}.partial"

    def staging_leftovers(self) -> list[Path]:
        return sorted(self.checkpoints.glob("*.partial"))

    @staticmethod
    def rank_state_name(rank: int) -> str:
        return f"rank{rank:05d}.pt"

    def rank_state(self, tag: str, rank: int) -> Path:
        return self.checkpoint(tag) / self.rank_state_name(rank)

    def checkpoint_config(self, tag: str) -> Path:
        return self.checkpoint(tag) / "config.yaml"

    def marker(self, tag: str) -> Path:
        return self.checkpoint(tag) / self.COMPLETE_MARKER

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest"

    def complete_tags(self) -> list[str]:
        """Tags of complete checkpoints, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p.name for p in self.checkpoints.iterdir()
                      if _TAG.match(p.name) and (p / self.COMPLETE_MARKER).is_file())

    def read_marker(self, tag: str) -> dict[str, Any]:
        return json.loads(self.marker(tag).read_text())

    def existing_checkpoint_error(self) -> JobError | None:
        """The error for starting a new run in a run directory that holds one already, if it does."""
        tags = self.complete_tags()
        if not tags:
            return None
        return JobError(
            f"{self.root}: already holds checkpoint {tags[-1]}; pass --resume to continue that run, "
            "--fresh (launch) to start over, or choose another run_dir"
        )

    def clear(self) -> None:
        """``launch --fresh``: the checkpoints, results and plots of an earlier run go."""
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        self.results.unlink(missing_ok=True)
        for plot in self.plots.glob("*.png"):
            plot.unlink()


def source_checkpoint(path: str | Path, option: str = "train.init_from") -> Path:
    """The checkpoint folder ``path`` names (``train.init_from``, ``facetrain evaluate``, ...): itself if it
    is one, else the newest complete checkpoint of the run directory it is.  ``option`` starts the error."""
    path = Path(path)
    if (path / RunDir.COMPLETE_MARKER).is_file():
        return path
    tags = RunDir(path).complete_tags()
    if tags:
        return RunDir(path).checkpoint(tags[-1])
    if not path.exists():
        raise JobError(f"{option}: {path} does not exist")
    raise JobError(f"{option}: {path} is neither a run directory with a complete checkpoint nor a "
                   "checkpoint folder (one with complete.json)")
