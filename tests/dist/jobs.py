"""Helpers that write small job configs and run them as real multi-process jobs."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch
import yaml

TINY_JOB = {
    "task": {
        "name": "face_identity",
        "num_identities": 8,
        "train_images_per_identity": 16,
        "eval_images_per_identity": 8,
        "image_size": 16,
        "batch_size": 8,
        "width": 8,
    },
    "train": {"steps": 40, "seed": 3, "log_every": 10, "eval_at_start": True},
    "optimizer": {"name": "adamw", "lr": 3.0e-3, "weight_decay": 0.01},
    "schedule": {"warmup_steps": 5, "decay": "cosine"},
    "deepspeed": {"zero_stage": 1, "gradient_clipping": 1.0},
    "checkpoint": {"every_steps": 10, "keep_last": 0},
}


def write_job(directory: Path, name: str = "job", **sections) -> Path:
    """A tiny face_identity job; ``sections`` update the defaults section by section."""
    job = {key: dict(value) for key, value in TINY_JOB.items()}
    for section, values in sections.items():
        job.setdefault(section, {}).update(values)
    job["run_dir"] = str(directory / name)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


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
    """SIGKILL a process and everything under it.  Not a process group: torchrun starts each
    worker in a session of its own, and workers outlive a killed agent."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(tree, timeout=30)
