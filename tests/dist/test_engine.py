"""Real 2-process DeepSpeed jobs on CPU (torchrun, gloo) through the `launch` CLI."""

from __future__ import annotations

import os
import signal
import subprocess

import psutil
import pytest
import torch

from tests.dist.jobs import (
    checkpoint_dir,
    final_parameters,
    kill_tree,
    launch_command,
    results,
    run_job,
    wait_for,
    write_job,
)


def workers(launch_pid: int) -> list[psutil.Process]:
    """The worker processes: the torchrun agent's children under `launch` (not their reader's
    DataLoader processes, which are forked from them and share their command line)."""
    found = []
    for child in psutil.Process(launch_pid).children(recursive=True):
        try:
            if "torch.distributed.run" in " ".join(child.parent().cmdline()):
                found.append(child)
        except (psutil.Error, AttributeError):  # a short-lived helper process that already exited
            pass
    return found


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_two_processes_train_and_report(face_shards, tmp_path, subprocess_env):
    config = write_job(tmp_path, "job", face_shards, train={"steps": 40, "eval_every": 20})
    proc = run_job(config, subprocess_env)
    assert_ok(proc)
    report = results(config)
    assert report["world_size"] == 2 and report["steps"] == 40 and report["target_steps"] == 40
    assert [e["step"] for e in report["evaluations"]] == [0, 20, 40]
    assert report["reader"]["corrupt"] == 0 and report["reader"]["truncated_shards"] == 0
    assert report["best"] is None and report["stopped_early"] is None
    assert "verification_auc" in proc.stdout  # the final table
    newest = checkpoint_dir(config) / "step00000040"
    assert {p.name for p in newest.glob("rank*.pt")} == {"rank00000.pt", "rank00001.pt"}
    assert (newest / "config.yaml").is_file() and (newest / "complete.json").is_file()
    assert "reader epoch 0: " in proc.stderr and "% of identities seen" in proc.stderr


def test_sigkill_then_resume_ends_identical_to_uninterrupted(face_shards, tmp_path, subprocess_env):
    steps = 60
    reference = write_job(tmp_path, "reference", face_shards, train={"steps": steps})
    assert_ok(run_job(reference, subprocess_env))

    interrupted = write_job(tmp_path, "interrupted", face_shards, train={"steps": steps})
    job = subprocess.Popen(launch_command(interrupted), env=subprocess_env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (checkpoint_dir(interrupted) / "step00000020" / "complete.json").exists(),
             timeout=180, what="the step-20 checkpoint")
    kill_tree(job.pid)  # launch, the agent and both workers: no chance to clean up
    job.wait()
    assert not (checkpoint_dir(interrupted) / f"step{steps:08d}").exists(), "killed too late"

    resumed = run_job(interrupted, subprocess_env, "--resume")
    assert_ok(resumed)
    assert "resumed from" in resumed.stderr
    expected, got = final_parameters(reference, steps), final_parameters(interrupted, steps)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert results(interrupted)["evaluations"] == results(reference)["evaluations"]


def test_sigterm_checkpoints_at_the_next_step_and_exits_zero(face_shards, tmp_path, subprocess_env):
    config = write_job(tmp_path, "job", face_shards, train={"steps": 400}, checkpoint={"every_steps": 0})
    job = subprocess.Popen(launch_command(config), env=subprocess_env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(workers(job.pid)) == 2 and (checkpoint_dir(config).parent / "results.json").exists(),
             timeout=180, what="two workers past their first evaluation")
    for worker in workers(job.pid):  # what SLURM does before pre-emption: signal every task
        worker.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 0, stderr[-5000:]
    assert "stop signal: checkpoint saved" in stderr
    saved = sorted(p.name for p in checkpoint_dir(config).glob("step*"))
    assert len(saved) == 1 and saved[0] != "step00000400"

    stopped_at = int(saved[0].removeprefix("step"))
    assert_ok(run_job(config, subprocess_env, "--resume", "--set", f"train.steps={stopped_at + 5}"))
    assert (checkpoint_dir(config) / f"step{stopped_at + 5:08d}" / "complete.json").exists()


def agent(launch_pid: int) -> psutil.Process:
    return next(p for p in psutil.Process(launch_pid).children() if "torch.distributed.run" in " ".join(p.cmdline()))


@pytest.mark.parametrize(("receiver", "signum"), [
    ("rank 1 only", signal.SIGTERM),  # one task of a job array, or a user's kill of one process
    ("the torchrun agent", signal.SIGTERM),  # a node's scheduler daemon
    ("launch", signal.SIGHUP),  # the terminal that started launch closed
])
def test_a_stop_signal_reaching_one_process_stops_every_rank_at_one_checkpoint(face_shards, tmp_path, subprocess_env,
                                                                               receiver, signum):
    # In-process reading: a signal the agent passes on reaches a worker's whole process group, and
    # the reader's DataLoader processes still die of it (docs/launching.md, known gap).
    config = write_job(tmp_path, "job", face_shards, train={"steps": 400}, checkpoint={"every_steps": 0},
                       task={"stream": {"num_workers": 0}})
    job = subprocess.Popen(launch_command(config), env=subprocess_env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(workers(job.pid)) == 2 and (checkpoint_dir(config).parent / "results.json").exists(),
             timeout=180, what="two workers past their first evaluation")
    if receiver == "launch":
        os.kill(job.pid, signum)
    elif receiver == "the torchrun agent":
        agent(job.pid).send_signal(signum)
    else:
        next(w for w in workers(job.pid) if w.environ().get("RANK") == "1").send_signal(signum)
    try:
        stdout, stderr = job.communicate(timeout=120)
    finally:  # ranks that disagree about stopping wait for each other forever
        kill_tree(job.pid)
    assert job.returncode == 0, stderr[-5000:]
    saved = sorted(p.name for p in checkpoint_dir(config).glob("step*"))
    assert len(saved) == 1 and saved[0] != "step00000400", saved
    assert {p.name for p in (checkpoint_dir(config) / saved[0]).glob("rank*.pt")} == {"rank00000.pt", "rank00001.pt"}
    assert stderr.count("stop signal: checkpoint saved") >= 1
    if receiver != "rank 1 only":  # the agent exits non-zero after passing a signal on; launch says why
        assert f"stopped by a signal after saving checkpoint {saved[0]}; continue with --resume" in stdout


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(face_shards, tmp_path, subprocess_env):
    config = write_job(tmp_path, "job", face_shards, train={"steps": 30})  # checkpoints at 10, 20, 30, all kept
    assert_ok(run_job(config, subprocess_env))
    reference = final_parameters(config, 30)
    model_states = checkpoint_dir(config) / "step00000030" / "mp_rank_00_model_states.pt"
    model_states.write_bytes(model_states.read_bytes()[:1000])  # truncated after it was marked complete
    proc = run_job(config, subprocess_env, "--resume")
    assert_ok(proc)
    assert "checkpoint step00000030 unreadable on 2 rank(s); falling back to the previous one" in proc.stderr
    assert "resumed from" in proc.stderr and "step00000020" in proc.stderr.split("resumed from", 1)[1][:300]
    got = final_parameters(config, 30)  # steps 21..30 again, from step 20: the same end
    for name in reference:
        assert torch.equal(reference[name], got[name]), name

    # Damaged on one rank only: that rank alone cannot load it, and resuming from two different
    # steps would desynchronise every collective after it, so both ranks take step 20.
    rank1_state = checkpoint_dir(config) / "step00000030" / "rank00001.pt"
    rank1_state.write_bytes(rank1_state.read_bytes()[:200])
    proc = run_job(config, subprocess_env, "--resume", timeout=180)
    assert_ok(proc)
    assert "unreadable on rank 1" in proc.stderr and "unreadable on rank 0" not in proc.stderr
    assert "checkpoint step00000030 unreadable on 1 rank(s); falling back to the previous one" in proc.stderr
    got = final_parameters(config, 30)
    for name in reference:
        assert torch.equal(reference[name], got[name]), name

    # ZeRO partitions the optimizer state per rank: another world size is refused, not guessed at.
    proc = run_job(config, subprocess_env, "--resume", nproc=1, timeout=180)
    assert proc.returncode != 0
    assert ("checkpoint was written by 2 processes, this run has 1; resume with 2 processes or start a new "
            "run_dir") in proc.stderr
