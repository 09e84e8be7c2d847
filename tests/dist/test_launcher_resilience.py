"""The launcher with real torchrun agents on CPU: two "nodes" on one machine, a SIGKILLed
worker restarted by torchrun and resumed with the same samples, a stop signal sent to
`launch` itself."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch

from launcher.launch.agent import RENDEZVOUS_FAILED
from launcher.launch.cluster import ClusterConfig
from launcher.launch.commands import WorkerArgs, torchrun_plan
from launcher.runtime.dist import free_port
from tests.dist.jobs import checkpoint_dir, final_parameters, results, wait_for, write_job


def assert_ok(proc) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_two_torchrun_agents_on_one_host_run_one_job(face_shards, tmp_path, subprocess_env):
    config = write_job(tmp_path, "job", face_shards, train={"steps": 20, "eval_at_start": False})
    node = [sys.executable, "-m", "launcher", str(config), "--launcher", "torchrun", "--nnodes", "2",
            "--nproc", "1", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-timeout", "60"]
    agents = [subprocess.Popen(node, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    outputs = [agent.communicate(timeout=240) for agent in agents]
    for agent, (stdout, stderr) in zip(agents, outputs, strict=True):
        assert agent.returncode == 0, stdout[-2000:] + stderr[-4000:]
    report = results(config)
    assert report["world_size"] == 2 and report["steps"] == 20
    assert "--rdzv-backend=c10d" in outputs[0][0]
    newest = checkpoint_dir(config) / "step00000020"
    assert {p.name for p in newest.glob("rank*.pt")} == {"rank00000.pt", "rank00001.pt"}


@pytest.mark.parametrize("rendezvous", [[], ["--node-rank", "0"]], ids=["c10d", "static"])
def test_a_node_alone_at_the_rendezvous_says_so_without_a_traceback(rendezvous, face_shards, tmp_path, subprocess_env):
    config = write_job(tmp_path, "job", face_shards)
    endpoint = f"127.0.0.1:{free_port()}"
    proc = subprocess.run([sys.executable, "-m", "launcher", str(config), "--launcher", "torchrun", "--nnodes", "2",
                           "--nproc", "1", "--rdzv-endpoint", endpoint, "--rdzv-timeout", "3", *rendezvous],
                          env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == RENDEZVOUS_FAILED, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        f"launch: the rendezvous at {endpoint} timed out: not all 2 nodes joined in time; "
        "start launch on every node with the same config, --nnodes 2 and "
        f"{'--node-rank 0..1' if rendezvous else '--rdzv-endpoint ' + endpoint} "
        "(cluster.rdzv_timeout_s sets how long to wait)",
        "launch: no complete checkpoint yet; start again with: launch "
        f"{config} --launcher torchrun --nnodes 2 --nproc 1 --rdzv-endpoint {endpoint} --rdzv-timeout 3"
        + "".join(f" {word}" for word in rendezvous)]


def test_the_deepspeed_launcher_runs_a_job_on_this_host(face_shards, tmp_path, subprocess_env):
    config = write_job(tmp_path, "job", face_shards, train={"steps": 10, "eval_at_start": False})
    proc = subprocess.run([sys.executable, "-m", "launcher", str(config), "--launcher", "deepspeed", "--nproc", "2"],
                          env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert_ok(proc)
    assert "-m deepspeed.launcher.runner --num_gpus=2" in proc.stdout
    assert results(config)["world_size"] == 2 and results(config)["steps"] == 10


def recorded_batches(directory: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (directory / f"rank{rank}.jsonl").read_text().splitlines()]


def newest_batch(directory: Path, rank: int) -> int:
    log = directory / f"rank{rank}.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return json.loads(lines[-1])["batch"] if lines and lines[-1].endswith("}") else 0


def recording_job(tmp_path: Path, name: str, shards: Path, env: dict) -> tuple[list[str], dict, Path]:
    """The command `launch` builds for torchrun with one restart allowed, its worker module
    swapped for one that also knows the sample-recording test task."""
    config = write_job(tmp_path, name, shards, task={"name": "sample_recording"},
                            train={"steps": 30, "eval_at_start": False, "log_every": 5})
    worker = WorkerArgs(str(config), module="tests.dist.run_with_test_tasks")
    plan = torchrun_plan(ClusterConfig(max_restarts=1), worker, nproc=2, rdzv_id=name, python=sys.executable,
                         environ=env)
    log_dir = tmp_path / f"{name}_samples"
    log_dir.mkdir()
    return plan.command, {**env, **plan.env, "SAMPLE_LOG_DIR": str(log_dir)}, config


def test_sigkilled_worker_is_restarted_and_resumes_with_the_same_samples(face_shards, tmp_path, subprocess_env):
    command, env, reference = recording_job(tmp_path, "reference", face_shards, subprocess_env)
    assert_ok(subprocess.run(command, env=env, capture_output=True, text=True, timeout=300))

    command, env, interrupted = recording_job(tmp_path, "interrupted", face_shards, subprocess_env)
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Killed once the step-10 checkpoint is complete and rank 1 has started batch 12, so both ranks
    # have trained past the checkpoint and must replay batches (killed before batch 11 is recorded,
    # a rank would show no replay at all).
    wait_for(lambda: (checkpoint_dir(interrupted) / "step00000010" / "complete.json").exists()
             and newest_batch(tmp_path / "interrupted_samples", rank=1) >= 12,
             timeout=180, what="the step-10 checkpoint and rank 1 at batch 12")
    rank1 = [p for p in psutil.Process(job.pid).children()  # the agent's workers, not their reader processes
             if "tests.dist.run_with_test_tasks" in " ".join(p.cmdline()) and p.environ().get("RANK") == "1"]
    assert len(rank1) == 1
    rank1[0].send_signal(signal.SIGKILL)  # an OOM kill: no handler runs, nothing is saved
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr[-5000:]
    assert "worker group restart 1: resuming from the newest complete checkpoint" in stderr
    assert "resumed from" in stderr
    assert results(interrupted)["steps"] == 30

    for rank in (0, 1):
        expected = {b["batch"]: b["index"] for b in recorded_batches(tmp_path / "reference_samples", rank)}
        got = recorded_batches(tmp_path / "interrupted_samples", rank)
        restart_at = next(i for i in range(1, len(got)) if got[i]["batch"] <= got[i - 1]["batch"])
        assert got[restart_at]["batch"] in (11, 21)  # after the step-10 (or step-20) checkpoint
        after = got[restart_at:]
        assert [b["batch"] for b in after] == list(range(after[0]["batch"], 31))
        for batch in got:  # before the kill and after the restart: the uninterrupted run's samples
            assert batch["index"] == expected[batch["batch"]], (rank, batch["batch"])
    expected, got = final_parameters(reference, 30), final_parameters(interrupted, 30)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
