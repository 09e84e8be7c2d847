"""How `launch` reports the end of the job it supervises: a stop that saved a checkpoint is
success, a crash is not, whatever checkpoints lie in the run directory."""

from __future__ import annotations

import json
import sys
import time

from launcher.failures import record_failure
from launcher.launch.agent import RENDEZVOUS_FAILED
from launcher.launch.supervise import run_supervised
from launcher.run_dir import RunDir

AGAIN = "launch job.yaml --nproc 2"


def job_that_saves(run_dir: RunDir, tag: str, for_stop: bool, exit_code: int) -> list[str]:
    """A stand-in for the torchrun agent: its workers wrote checkpoint ``tag``, then it exits."""
    marker = {"step": 7, "world_size": 2, "for_stop": for_stop}
    script = (f"import json, pathlib, time; d = pathlib.Path({str(run_dir.checkpoint(tag))!r}); d.mkdir(parents=True); "
              f"(d / 'complete.json').write_text(json.dumps({{**{marker!r}, 'saved_at': time.time()}})); "
              f"raise SystemExit({exit_code})")
    return [sys.executable, "-c", script]


def test_a_checkpoint_saved_for_a_stop_makes_the_agents_failure_a_success(tmp_path, capsys):
    run_dir = RunDir(tmp_path)
    assert run_supervised(job_that_saves(run_dir, "step00000007", True, 1), {}, run_dir, AGAIN) == 0
    assert "stopped by a signal after saving checkpoint step00000007; continue with --resume" in capsys.readouterr().out


def test_a_crash_after_a_periodic_checkpoint_is_a_failure(tmp_path, capsys):
    run_dir = RunDir(tmp_path)
    command = job_that_saves(run_dir, "step00000007", False, 1)
    assert run_supervised(command, {}, run_dir, AGAIN) == 1
    out, err = capsys.readouterr()
    assert "stopped by a signal" not in out
    assert err.splitlines()[-2:] == [
        "launch: the job failed, and no rank recorded an error (killed by a signal or out of memory?); the agent's "
        "report above gives each rank's exit code",
        "launch: newest complete checkpoint step00000007; continue with: launch job.yaml --nproc 2 --resume"]


def test_a_stop_checkpoint_of_an_earlier_launch_does_not_excuse_this_one(tmp_path, capsys):
    run_dir = RunDir(tmp_path)
    run_dir.checkpoint("step00000003").mkdir(parents=True)
    run_dir.marker("step00000003").write_text(json.dumps({"step": 3, "world_size": 2, "for_stop": True,
                                                   "saved_at": time.time() - 3600}))
    assert run_supervised([sys.executable, "-c", "raise SystemExit(1)"], {}, run_dir, AGAIN) == 1
    assert "stopped by a signal" not in capsys.readouterr().out


def test_a_failure_is_summed_up_by_the_rank_that_failed_first_not_by_those_that_lost_it(tmp_path, capsys):
    run_dir = RunDir(tmp_path)
    record_failure(run_dir, 3, "RuntimeError: stale record of an earlier launch", after_a_peer_died=False)
    script = ("import sys, time; sys.path[:0] = " + repr(sys.path) + "; "
              "from launcher.failures import record_failure; from launcher.run_dir import RunDir; "
              f"run_dir = RunDir({str(tmp_path)!r}); "
              "record_failure(run_dir, 0, 'RuntimeError: gloo peer closed\\nmore', after_a_peer_died=True); "
              "time.sleep(0.01); "
              "record_failure(run_dir, 1, 'quota exceeded while reading\\ntraceback', after_a_peer_died=False); "
              "raise SystemExit(1)")
    assert run_supervised([sys.executable, "-c", script], {}, run_dir, AGAIN) == 1
    assert capsys.readouterr().err.splitlines()[-2:] == [
        "launch: the job failed; rank 1 first: quota exceeded while reading",
        "launch: no complete checkpoint yet; start again with: launch job.yaml --nproc 2"]


def test_a_rendezvous_that_timed_out_adds_only_how_to_continue_unless_a_rank_failed_before(tmp_path, capsys):
    """The agent printed the rendezvous line itself; a group that re-formed after a rank's failure
    and then timed out is still summed up by that failure."""
    run_dir = RunDir(tmp_path / "alone")
    assert run_supervised(job_that_saves(run_dir, "step00000007", False, RENDEZVOUS_FAILED), {}, run_dir,
                          AGAIN) == RENDEZVOUS_FAILED
    assert capsys.readouterr().err.splitlines() == [
        "launch: newest complete checkpoint step00000007; continue with: launch job.yaml --nproc 2 --resume"]

    run_dir = RunDir(tmp_path / "after_a_failure")
    script = ("import sys; sys.path[:0] = " + repr(sys.path) + "; "
              "from launcher.failures import record_failure; from launcher.run_dir import RunDir; "
              f"record_failure(RunDir({str(run_dir.root)!r}), 1, 'CUDA error: an illegal memory access', False); "
              f"raise SystemExit({RENDEZVOUS_FAILED})")
    assert run_supervised([sys.executable, "-c", script], {}, run_dir, AGAIN) == RENDEZVOUS_FAILED
    assert capsys.readouterr().err.splitlines() == [
        "launch: the job failed; rank 1 first: CUDA error: an illegal memory access",
        "launch: no complete checkpoint yet; start again with: launch job.yaml --nproc 2"]
