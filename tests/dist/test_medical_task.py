"""The medical classification task on the shared engine, 2 processes on synthetic figshare .mat
shards: it trains and evaluates on held-out patients, keeps its best checkpoint, and a run stopped
part-way resumes to the same end as an uninterrupted one."""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from medtrain.demo_data import write_figshare_layout
from shards.cli import main as shards_main
from tests.dist.jobs import checkpoint_dir, final_parameters, launch_command, merge, results, run_job, wait_for

DEMO = yaml.safe_load((Path(__file__).parents[2] / "configs" / "med" / "demo.yaml").read_text())


@pytest.fixture(scope="module")
def tumour_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("tumour")
    write_figshare_layout(root / "figshare", patients=18, slices_per_patient=5, size=64)
    with contextlib.redirect_stdout(io.StringIO()):
        assert shards_main(["build", "figshare-tumor", str(root / "figshare"), str(root / "shards"),
                            "--split", "train=0.6,val=0.4", "--seed", "1", "--maxcount", "20"]) == 0
    return root / "shards"


def medical_job(directory, name, shards, **sections):
    job = yaml.safe_load(yaml.safe_dump(DEMO))
    merge(job, {"task": {"stream": {"shards": str(shards)}, "bootstrap": 100, "overlays": 4},
                "train": {"steps": 30, "eval_every": 10, "log_every": 5},
                "checkpoint": {"every_steps": 10, "keep_last": 1}, **sections})
    job["run_dir"] = str(directory / name)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_trains_keeps_its_best_checkpoint_and_resumes_to_the_same_end(tumour_shards, tmp_path, subprocess_env):
    reference = medical_job(tmp_path, "reference", tumour_shards)
    proc = run_job(reference, subprocess_env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    report = results(reference)
    scores = {e["step"]: e["metrics"]["balanced_accuracy"] for e in report["evaluations"]}
    assert list(scores) == [0, 10, 20, 30]  # (that it learns: tests/e2e/test_med_demo.py)
    best = max(scores, key=lambda step: (scores[step], -step))  # the first of equal bests
    assert report["best"]["step"] == best and report["best"]["metric"] == "balanced_accuracy"
    kept = {p.name for p in checkpoint_dir(reference).glob("step*")}
    assert kept == {f"step{best:08d}", "step00000030"}  # keep_last 1, and the best spared

    stopped = medical_job(tmp_path, "stopped", tumour_shards)
    job = subprocess.Popen(launch_command(stopped), env=subprocess_env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (checkpoint_dir(stopped) / "step00000010" / "complete.json").exists(), timeout=180,
             what="the step-10 checkpoint")
    job.send_signal(signal.SIGTERM)
    stdout, stderr = job.communicate(timeout=180)
    assert job.returncode == 0, stderr[-4000:]
    assert "stopped by a signal after saving checkpoint" in stdout
    assert not (checkpoint_dir(stopped) / "step00000030").exists(), "stopped too late to test a resume"
    resumed = run_job(stopped, subprocess_env, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    expected, got = final_parameters(reference, 30), final_parameters(stopped, 30)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert [e["step"] for e in results(stopped)["evaluations"]] == [0, 10, 20, 30], stdout[-3000:]
    assert results(stopped)["evaluations"] == report["evaluations"]
    assert results(stopped)["best"] == report["best"]
