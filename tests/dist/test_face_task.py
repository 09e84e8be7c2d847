"""The face task through the real engine: 2 DeepSpeed processes on CPU, cross-rank mining on
P×K batches from shards, verification on held-out identities, and exact resume with the
reader's position."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys

import torch

from shards.cli import main as shards_main
from tests.dist.jobs import final_parameters, run_job, write_job
from tests.fixtures import datasets
from tests.fixtures.insightface import make_bin


def test_face_task_learns_evaluates_and_resumes_exactly(face_shards, tmp_path, subprocess_env):
    sections = {"train": {"steps": 60}, "checkpoint": {"every_steps": 20}}
    config = write_job(tmp_path, "run", face_shards, **sections)
    proc = run_job(config, subprocess_env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [e["step"] for e in results["evaluations"]] == [0, 60]
    before, after = (e["metrics"] for e in results["evaluations"])
    assert before["verification_pairs"] == after["verification_pairs"] == 400
    # Held-out identities, seed 1 (2-core CPU machine: accuracy 0.68 -> 0.84, AUC 0.71 -> 0.92,
    # EER 0.34 -> 0.15): an untrained, collapsed or mislabelled model cannot clear these margins.
    assert after["verification_accuracy"] >= before["verification_accuracy"] + 0.08
    assert after["verification_auc"] >= before["verification_auc"] + 0.10
    assert after["verification_eer"] <= before["verification_eer"] - 0.08
    assert (tmp_path / "run" / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert "active_triplets" in proc.stderr and "d_an" in proc.stderr  # mining statistics are logged

    # Resume a copy of the run from its step-40 checkpoint: the reader continues at its saved
    # position, so the run must end exactly where the uninterrupted one did.
    shutil.copytree(tmp_path / "run", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step00000060")
    resumed_config = write_job(tmp_path, "resumed", face_shards, **sections)
    proc = run_job(resumed_config, subprocess_env, "--resume")
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "resumed from" in proc.stderr
    expected, got = final_parameters(config, 60), final_parameters(resumed_config, 60)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    saved = torch.load(tmp_path / "resumed" / "checkpoints" / "step00000040" / "rank00001.pt", weights_only=False)
    reader = saved["train_state"]["reader"]
    assert reader["batches"] == 40 and reader["world_size"] == 2
    # The resumed run's history starts at step 0: results.json and every curve of roc.png.
    assert json.loads((tmp_path / "resumed" / "results.json").read_text())["evaluations"] == results["evaluations"]
    final = torch.load(tmp_path / "resumed" / "checkpoints" / "step00000060" / "rank00000.pt", weights_only=False)
    assert sorted(final["train_state"]["task"]["verification"]) == [0, 60]


def test_triplet_plus_arcface_evaluated_on_lfw_pairs(face_shards, tmp_path, subprocess_env):
    datasets.make_lfw(tmp_path / "lfw")
    with contextlib.redirect_stdout(io.StringIO()):
        assert shards_main(["build", "lfw-pairs", str(tmp_path / "lfw"), str(tmp_path / "lfw_shards")]) == 0
    config = write_job(tmp_path, "arc", face_shards, train={"steps": 10, "eval_at_start": False},
                            task={"objective": "triplet+arcface", "eval_shards": str(tmp_path / "lfw_shards"),
                                  "eval_split": "test"})
    proc = run_job(config, subprocess_env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "arcface_loss" in proc.stderr and "active_triplets" in proc.stderr
    parameters = final_parameters(config, 10)
    assert parameters["head.centres"].shape == (30, 128)  # one centre per identity in the manifest
    results = json.loads((tmp_path / "arc" / "results.json").read_text())
    assert results["evaluations"][-1]["metrics"]["verification_pairs"] == 7  # the LFW fixture's usable pairs


def test_published_benchmark_sets_are_evaluated_beside_the_held_out_split(face_shards, tmp_path, subprocess_env):
    """insightface .bin sets (built by shards build insightface-bin) each get their own figures."""
    make_bin(tmp_path / "agedb_30.bin", num_pairs=40)
    with contextlib.redirect_stdout(io.StringIO()):
        assert shards_main(["build", "insightface-bin", str(tmp_path / "agedb_30.bin"),
                            str(tmp_path / "agedb_30")]) == 0
    config = write_job(tmp_path, "bench", face_shards, train={"steps": 5, "eval_at_start": False},
                       task={"benchmarks": [str(tmp_path / "agedb_30")]})
    proc = run_job(config, subprocess_env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    metrics = json.loads((tmp_path / "bench" / "results.json").read_text())["evaluations"][-1]["metrics"]
    assert metrics["agedb_30_pairs"] == 40 and 0 <= metrics["agedb_30_accuracy"] <= 1
    assert metrics["agedb_30_missing_samples"] == 0 and "verification_accuracy" in metrics


def test_a_missing_shard_folder_is_one_clear_line_in_a_job_started_without_launch(tmp_path, subprocess_env):
    """(``launch`` refuses it before starting anything: tests/e2e/test_launch_cli.py.)"""
    config = write_job(tmp_path, "missing", tmp_path / "no_such_shards")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
                           "-m", "launcher.runtime.train", str(config)], env=subprocess_env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode != 0
    assert f"ERROR launcher: {tmp_path / 'no_such_shards' / 'manifest.json'}: missing" in proc.stderr
    assert "facetrain/face_task.py" not in proc.stderr  # no stack trace of ours
