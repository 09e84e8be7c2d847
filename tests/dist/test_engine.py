"""Real 2-process DeepSpeed jobs on CPU (torchrun, gloo) through the `launch` CLI."""

from __future__ import annotations

import subprocess
import sys

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

    # ZeRO partitions the optimizer state per rank: another world size is refused, not guessed at;
    # by launch before it starts anything, and by the ranks of a job started without it.
    proc = run_job(config, subprocess_env, "--resume", nproc=1, timeout=180)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().endswith("step00000030: saved by 2 processes, this start plans 1; resume with 2 "
                                        "(--nproc / --nnodes) or start a new run_dir")
    bare = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
                           "-m", "launcher.runtime.train", str(config), "--resume"], env=subprocess_env,
                          capture_output=True, text=True, timeout=180)
    assert bare.returncode != 0
    assert ("checkpoint was written by 2 processes, this run has 1; resume with 2 processes or start a new "
            "run_dir") in bare.stderr
