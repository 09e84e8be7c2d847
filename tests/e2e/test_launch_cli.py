"""The `launch` command: config and data mistakes fail before any process is spawned, with one
line naming the file and key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.dist.jobs import write_job


def launch(*args, env):
    return subprocess.run([sys.executable, "-m", "launcher", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)


def test_misspelt_key_fails_before_any_process_starts(tmp_path, subprocess_env):
    config = write_job(tmp_path)
    config.write_text(config.read_text().replace("eval_at_start", "eval_at_strat"))
    proc = launch(config, "--nproc", 2, env=subprocess_env)
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        f"error: {config}: train.eval_at_strat: unknown key (did you mean 'eval_at_start'?)"
    )
    assert "launcher.launch.agent" not in proc.stdout  # nothing was launched
    assert not (tmp_path / "job").exists()


def test_bad_override_fails_before_any_process_starts(tmp_path, subprocess_env):
    proc = launch(write_job(tmp_path), "--set", "optimizer.lr=fast", env=subprocess_env)
    assert proc.returncode == 2
    assert "optimizer.lr: expected float, got str 'fast'" in proc.stderr


def test_dry_run_prints_the_torchrun_command(tmp_path, subprocess_env):
    config = write_job(tmp_path)
    proc = launch(config, "--nproc", 2, "--set", "train.steps=7", "--dry-run", env=subprocess_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(
        "-m launcher.launch.agent --standalone --nproc-per-node=2 --max-restarts=0 "
        "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 "
        f"-m launcher.runtime.train {config} --set train.steps=7"
    )
    assert not (tmp_path / "job").exists()


def test_existing_run_needs_resume_or_fresh(tmp_path, subprocess_env):
    config = write_job(tmp_path)
    marker = tmp_path / "job" / "checkpoints" / "step00000010" / "complete.json"
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    proc = launch(config, "--dry-run", env=subprocess_env)
    assert proc.returncode == 2
    assert "already holds checkpoint step00000010; pass --resume" in proc.stderr
    assert launch(config, "--resume", "--dry-run", env=subprocess_env).returncode == 0


def test_fresh_deletes_checkpoints_and_results_then_launches(tmp_path, monkeypatch, face_shards):
    from launcher.launch import cli

    config = write_job(tmp_path, "job", face_shards)
    marker = tmp_path / "job" / "checkpoints" / "step00000010" / "complete.json"
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    (tmp_path / "job" / "results.json").write_text("{}")
    launched = []
    monkeypatch.setattr(cli, "run_supervised", lambda argv, env, run_dir, again: launched.append(argv) or 0)
    assert cli.main([str(config), "--nproc", "2", "--fresh"]) == 0
    assert not (tmp_path / "job" / "checkpoints").exists() and not (tmp_path / "job" / "results.json").exists()
    assert launched and launched[0][-1] == str(config)  # started without --resume


def damaged_copy(face_shards, tmp_path, split: str):
    """A copy of the shards without the first shard of ``split``."""
    copy = tmp_path / "copy"
    shutil.copytree(face_shards, copy)
    gone = next(s for s in json.loads((copy / "manifest.json").read_text())["shards"] if s["split"] == split)
    (copy / gone["name"]).unlink()
    return copy


def with_checkpoint_of(world_size: int, run_dir) -> None:
    marker = run_dir / "checkpoints" / "step00000010" / "complete.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"format": 2, "step": 10, "world_size": world_size, "saved_at": 0}))


def use(key: str, value) -> list[str]:
    return ["--set", f"{key}={value}"]


MISTAKES = {  # what the user did -> (setup(face_shards, tmp_path) -> launch arguments, the line's core)
    "P negative": (lambda shards, tmp: use("task.stream.identities_per_batch", -4),
                   "task.stream: identities_per_batch (P) must be at least 1, got -4"),
    "K zero": (lambda shards, tmp: use("task.stream.images_per_identity", 0),
               "task.stream: images_per_identity (K) must be at least 1, got 0"),
    "image size negative": (lambda shards, tmp: use("task.stream.augment.size", -32),
                            "task.stream.augment: size must be a positive number of pixels, got -32"),
    "workers negative": (lambda shards, tmp: use("task.stream.num_workers", -1),
                         "task.stream: num_workers and steps_per_epoch must be >= 0, got -1 and 0"),
    "P above the identities": (lambda shards, tmp: use("task.stream.identities_per_batch", 25),
                               "shards split train: only 21 identities have >= 1 images; a batch needs 25"),
    "shard folder missing": (lambda shards, tmp: use("task.stream.shards", tmp / "nowhere"),
                             "{tmp}/nowhere/manifest.json: missing"),
    "shard folder empty": (lambda shards, tmp: (tmp / "empty").mkdir() or use("task.stream.shards", tmp / "empty"),
                           "{tmp}/empty/manifest.json: missing"),
    "split absent": (lambda shards, tmp: use("task.stream.split", "training"),
                     "no split 'training' (has train, val)"),
    "a training shard deleted": (lambda shards, tmp: use("task.stream.shards", damaged_copy(shards, tmp, "train")),
                                 "{tmp}/copy: split 'train' is missing 40 of 168 samples (23.8%, more than the 1.0% "
                                 "allowed by max_missing_fraction) in 1 of 5 shards: {tmp}/copy/train-000000.tar "
                                 "(missing)"),
    "an evaluation shard deleted": (lambda shards, tmp: use("task.eval_shards", damaged_copy(shards, tmp, "val")),
                                    "{tmp}/copy: split 'val' is missing 40 of 72 samples (55.6%, more than the 0.0% "
                                    "allowed by max_missing_fraction) in 1 of 2 shards: {tmp}/copy/val-000000.tar "
                                    "(missing)"),
    "more held-out pairs than the identities have": (lambda shards, tmp: use("task.eval_pairs_per_fold", 60),
                                                     "split val has 252 matched pairs, and 10 folds of 60 pairs need "
                                                     "300; lower task.eval_pairs_per_fold or set task.eval_pairs: all"),
    "resume with another world size": (lambda shards, tmp: with_checkpoint_of(2, tmp / "job") or ["--resume",
                                                                                                  "--nproc", 3],
                                       "step00000010: saved by 2 processes, this start plans 3; resume with 2 "
                                       "(--nproc / --nnodes) or start a new run_dir"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_mistake_is_one_line_before_any_process_starts(mistake, face_shards, tmp_path, subprocess_env):
    setup, expected = MISTAKES[mistake]
    config = write_job(tmp_path, "job", face_shards)
    proc = launch(config, *setup(face_shards, tmp_path), env=subprocess_env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""  # no command planned, none started
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected.format(tmp=tmp_path) in lines[0]
    if mistake != "resume with another world size":  # the run directory is not touched
        assert not (tmp_path / "job").exists()
