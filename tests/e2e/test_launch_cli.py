"""The `launch` command: config mistakes fail before any process is spawned."""

from __future__ import annotations

import subprocess
import sys

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
    assert "torch.distributed.run" not in proc.stdout  # nothing was launched
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
        "-m torch.distributed.run --standalone --nproc-per-node=2 --max-restarts=0 "
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


def test_fresh_deletes_checkpoints_and_results_then_launches(tmp_path, monkeypatch):
    from launcher.launch import cli

    config = write_job(tmp_path)
    marker = tmp_path / "job" / "checkpoints" / "step00000010" / "complete.json"
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    (tmp_path / "job" / "results.json").write_text("{}")
    launched = []
    monkeypatch.setattr(cli, "run_supervised", lambda argv, env, checkpoints: launched.append(argv) or 0)
    assert cli.main([str(config), "--nproc", "2", "--fresh"]) == 0
    assert not (tmp_path / "job" / "checkpoints").exists() and not (tmp_path / "job" / "results.json").exists()
    assert launched and launched[0][-1] == str(config)  # started without --resume
