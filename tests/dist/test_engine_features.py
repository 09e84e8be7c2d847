"""What the medical track needs from the engine, on real 2-process face jobs: a second stage
from another run's weights (train.init_from), the best checkpoint kept (checkpoint.keep_best),
and early stopping (train.early_stop)."""

from __future__ import annotations

from tests.dist.jobs import checkpoint_dir, final_parameters, results, run_job, write_job


def assert_ok(proc) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_init_from_starts_a_second_stage_from_the_first_ones_weights(face_shards, tmp_path, subprocess_env):
    stage1 = write_job(tmp_path, "stage1", face_shards, train={"steps": 20, "eval_at_start": False})
    assert_ok(run_job(stage1, subprocess_env))
    final = results(stage1)["evaluations"][-1]["metrics"]

    # Stage 2 adds an ArcFace head: its keys are new, so they must be declared.
    second = {"train": {"steps": 10, "eval_at_start": True, "init_from": str(tmp_path / "stage1")},
              "task": {"objective": "triplet+arcface"}}
    undeclared = write_job(tmp_path, "undeclared", face_shards, **second)
    proc = run_job(undeclared, subprocess_env)
    assert proc.returncode != 0  # the workers exit 2; torchrun's agent reports any failure as 1
    assert "does not fit this model; keys in this model but not in the checkpoint: head.centres" in proc.stderr
    assert "train.init_new_keys" in proc.stderr
    assert "launcher/runtime/" not in proc.stderr  # one line, no stack trace of ours (torchrun adds its own)
    assert not checkpoint_dir(undeclared).exists()

    second["train"]["init_new_keys"] = ["head."]
    stage2 = write_job(tmp_path, "stage2", face_shards, **second)
    proc = run_job(stage2, subprocess_env)
    assert_ok(proc)
    assert f"model weights from {tmp_path / 'stage1' / 'checkpoints' / 'step00000020'}" in proc.stderr
    report = results(stage2)
    assert [e["step"] for e in report["evaluations"]] == [0, 10]  # a fresh step count
    # Stage 2's step-0 network is stage 1's final one: the same held-out verification, exactly.
    assert report["evaluations"][0]["metrics"] == final
    stage1_weights, stage2_weights = final_parameters(stage1, 20), final_parameters(stage2, 10)
    assert "head.centres" in stage2_weights and "head.centres" not in stage1_weights

    missing = write_job(tmp_path, "missing", face_shards, train={"steps": 5, "init_from": str(tmp_path / "nope")})
    proc = run_job(missing, subprocess_env)
    assert proc.returncode == 2 and f"train.init_from: {tmp_path / 'nope'} does not exist" in proc.stderr
    assert "torch.distributed.run" not in proc.stdout  # refused before any process started


def test_the_best_checkpoint_is_kept_beside_the_last_and_survives_a_resume(face_shards, tmp_path, subprocess_env):
    # The *highest* EER: its best is the untrained model of the step-0 evaluation, far from the newest
    # checkpoint, so retention has to spare it (and the step-0 evaluation has to save it).
    keep_best = {"metric": "verification_eer", "mode": "max"}
    sections = {"train": {"steps": 30, "eval_every": 10},
                "checkpoint": {"every_steps": 10, "keep_last": 1, "keep_best": keep_best}}
    config = write_job(tmp_path, "job", face_shards, **sections)
    assert_ok(run_job(config, subprocess_env))

    proc = run_job(config, subprocess_env, "--resume", "--set", "train.steps=50")
    assert_ok(proc)
    report = results(config)
    evaluations = report["evaluations"]
    assert [e["step"] for e in evaluations] == [0, 10, 20, 30, 40, 50]  # history kept across the resume
    best = max(evaluations, key=lambda e: (e["metrics"]["verification_eer"], -e["step"]))
    assert best["step"] != 50
    assert report["best"] == {"metric": "verification_eer", "mode": "max",
                              "value": best["metrics"]["verification_eer"], "step": best["step"],
                              "checkpoint": f"step{best['step']:08d}"}
    kept = sorted(p.name for p in checkpoint_dir(config).glob("step*"))
    assert kept == sorted({report["best"]["checkpoint"], "step00000050"})  # keep_last 1 plus the best


def test_early_stop_ends_the_run_on_every_rank_and_says_why(face_shards, tmp_path, subprocess_env):
    # No evaluation can improve the AUC by more than 1: the run stops at the first one after step 0.
    early_stop = {"metric": "verification_auc", "patience": 1, "min_delta": 1.0}
    config = write_job(tmp_path, "job", face_shards,
                       train={"steps": 100, "eval_every": 10, "early_stop": early_stop},
                       checkpoint={"every_steps": 0})
    proc = run_job(config, subprocess_env)
    assert_ok(proc)
    report = results(config)
    assert report["steps"] == 10 and [e["step"] for e in report["evaluations"]] == [0, 10]
    stopped = report["stopped_early"]
    assert (stopped["step"], stopped["metric"], stopped["best_step"]) == (10, "verification_auc", 0)
    assert stopped["best_value"] == report["evaluations"][0]["metrics"]["verification_auc"]
    assert "has not improved by more than 1.0" in stopped["reason"]
    assert [p.name for p in checkpoint_dir(config).glob("step*")] == ["step00000010"]

    proc = run_job(config, subprocess_env, "--resume")  # a stopped run stays stopped
    assert_ok(proc)
    assert results(config)["steps"] == 10 and "resumed from" in proc.stderr
    assert [p.name for p in checkpoint_dir(config).glob("step*")] == ["step00000010"]
