"""Non-finite losses: skipped on every rank together, counted, and fatal when they persist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from tests.dist.jobs import final_parameters, results, write_job

ENTRY = Path(__file__).with_name("run_with_test_tasks.py")


def torchrun(config: Path, env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(ENTRY), str(config)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_nan_on_one_rank_is_skipped_on_all_ranks_and_counted(face_shards, tmp_path, subprocess_env):
    config = write_job(tmp_path, "job", face_shards, task={"name": "nan_injecting", "nan_from": 10, "nan_count": 3},
                       train={"steps": 30})
    proc = torchrun(config, subprocess_env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert results(config)["nonfinite_skipped"] == 3
    assert results(config)["steps"] == 30  # skipped micro-steps do not count as steps
    assert proc.stderr.count("non-finite loss on 1 of 2 ranks at step 10: skipped") == 3
    parameters = final_parameters(config, 30)
    assert all(torch.isfinite(p).all() for p in parameters.values())


def test_persistent_nan_stops_the_run_with_a_clear_error(face_shards, tmp_path, subprocess_env):
    config = write_job(tmp_path, "job", face_shards, task={"name": "nan_injecting", "nan_from": 4, "nan_count": 1000},
                       train={"steps": 30, "max_nonfinite_in_a_row": 3})
    proc = torchrun(config, subprocess_env)
    assert proc.returncode != 0
    assert "3 non-finite losses in a row at step 4" in proc.stderr
    assert "launcher/runtime/loop.py" not in proc.stderr  # one clear line, no stack trace of ours
    # (torchrun's agent still prints its own ChildFailedError summary after it)
