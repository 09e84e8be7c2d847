"""Small face_triplet jobs on shards of a synthetic CASIA-WebFace folder, run as real
multi-process jobs through `launch`."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch
import yaml

from facetrain.demo_data import write_casia_layout
from launcher.launch import supervise
from shards.cli import main as shards_main

JOB = {
    "task": {
        "name": "face_triplet",
        "stream": {"shards": "", "identities_per_batch": 4, "images_per_identity": 3, "buffer_samples": 96,
                   "num_workers": 1, "open_shards": 2, "augment": {"size": 32}},
        "model": {"backbone": "small", "image_size": 32, "freeze": "none"},
        "eval_pairs_per_fold": 40,
        "eval_batch_size": 64,
    },
    "train": {"steps": 20, "seed": 1, "log_every": 5, "eval_at_start": True},
    # Warm-up and a moderate rate: with lr 2e-3 from step 0 these 12-image batches collapse every
    # embedding onto one point within 20 steps (d(a,p) and d(a,n) -> 0, loss = margin).
    "optimizer": {"name": "adamw", "lr": 5.0e-4},
    "schedule": {"warmup_steps": 10},
    "deepspeed": {"zero_stage": 1},
    "checkpoint": {"every_steps": 10, "keep_last": 0},
}


def build_face_shards(root: Path) -> Path:
    write_casia_layout(root / "casia", identities=30, images_per_identity=8, size=36)
    with contextlib.redirect_stdout(io.StringIO()):
        assert shards_main(["build", "casia-webface", str(root / "casia"), str(root / "shards"),
                            "--split", "train=0.7,val=0.3", "--maxcount", "40"]) == 0
    return root / "shards"


def write_job(directory: Path, name: str = "job", shards: Path | None = None, **sections) -> Path:
    """A small face_triplet job; ``sections`` are merged into the defaults key by key, nested
    mappings too.  Without ``shards`` it names a folder that does not exist (enough for config
    checks and dry runs)."""
    job = json.loads(json.dumps(JOB))
    job["task"]["stream"]["shards"] = str(shards or directory / "no_shards")
    merge(job, sections)
    job["run_dir"] = str(directory / name)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def merge(into: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def launch_command(config: Path, *extra: str, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "launcher", str(config), "--nproc", str(nproc), *extra]


def run_job(config: Path, env: dict, *extra: str, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(launch_command(config, *extra, nproc=nproc), env=env, capture_output=True,
                          text=True, timeout=timeout)


def checkpoint_dir(config: Path) -> Path:
    return Path(yaml.safe_load(config.read_text())["run_dir"]) / "checkpoints"


def results(config: Path) -> dict:
    return json.loads((checkpoint_dir(config).parent / "results.json").read_text())


def final_parameters(config: Path, step: int) -> dict[str, torch.Tensor]:
    path = checkpoint_dir(config) / f"step{step:08d}" / "mp_rank_00_model_states.pt"
    return torch.load(path, weights_only=False)["module"]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def kill_tree(pid: int) -> None:
    """SIGKILL a job's whole tree (launch, the agent, workers, their reader processes) and wait."""
    psutil.wait_procs(supervise.kill_tree(pid), timeout=30)
