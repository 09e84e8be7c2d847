"""Stop signals, as a cluster, a terminal or a user sends them, on a 2-process face job reading
shards through DataLoader worker processes: every rank checkpoints at the next step and exits 0,
launch says how to continue, and no process is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
import torch

from launcher.launch.agent import AGENT_MODULE
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


def agent(launch_pid: int) -> psutil.Process:
    return next(p for p in psutil.Process(launch_pid).children() if AGENT_MODULE in p.cmdline())


def workers(launch_pid: int) -> list[psutil.Process]:
    """The training processes: the agent's children (not their readers' DataLoader processes)."""
    return agent(launch_pid).children()


def catches_stop_signals(process: psutil.Process) -> bool:
    """The process has its handlers installed (before that, a signal kills it: start-up is not
    what these tests are about)."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    stops = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
    return all(caught & (1 << (signum - 1)) for signum in stops)


def reader_processes(rank: psutil.Process) -> list[psutil.Process]:
    """The rank's DataLoader workers: forked, so they share its command line (unlike a library's
    short-lived helper processes at import)."""
    return [child for child in rank.children() if child.cmdline() == rank.cmdline()]


def start(config, env) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """The job, once both ranks train (their readers' processes started), and every process it runs."""
    job = subprocess.Popen(launch_command(config), env=env, start_new_session=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)

    def training() -> bool:  # both ranks heed stop signals and read through their DataLoader processes
        try:
            ranks = workers(job.pid)
            return len(ranks) == 2 and all(catches_stop_signals(rank) and reader_processes(rank) for rank in ranks)
        except (StopIteration, psutil.Error):
            return False

    wait_for(training, timeout=180, what="two workers training with their reader processes")
    return job, psutil.Process(job.pid).children(recursive=True)


def finish(job: subprocess.Popen, processes: list[psutil.Process]) -> tuple[str, str]:
    try:
        stdout, stderr = job.communicate(timeout=120)
    finally:  # ranks that disagree about stopping would wait for each other forever
        kill_tree(job.pid)
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"
    return stdout, stderr


def stop_checkpoint(config) -> str:
    saved = sorted(p.name for p in checkpoint_dir(config).glob("step*"))
    assert len(saved) == 1 and saved[0] != "step00000400", saved
    assert {p.name for p in (checkpoint_dir(config) / saved[0]).glob("rank*.pt")} == {"rank00000.pt", "rank00001.pt"}
    return saved[0]


RECEIVERS = {
    "launch": lambda job: [psutil.Process(job.pid)],
    "the torchrun agent": lambda job: [agent(job.pid)],
    "rank 1": lambda job: [w for w in workers(job.pid) if w.environ().get("RANK") == "1"],
}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1],
                         ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("receiver", list(RECEIVERS))
def test_a_stop_signal_to_any_process_of_the_job_checkpoints_every_rank(face_shards, tmp_path, subprocess_env,
                                                                        receiver, signum):
    config = write_job(tmp_path, "job", face_shards, train={"steps": 400}, checkpoint={"every_steps": 0})
    job, processes = start(config, subprocess_env)
    for process in RECEIVERS[receiver](job):
        process.send_signal(signum)
    stdout, stderr = finish(job, processes)
    assert job.returncode == 0, stdout[-2000:] + stderr[-5000:]
    saved = stop_checkpoint(config)
    assert stderr.count("stop signal: checkpoint saved") == 2  # both ranks
    assert "DataLoader worker" not in stderr  # the reader's processes left the decision to their rank
    if receiver != "rank 1":  # the agent exits non-zero after passing a signal on; launch says why
        assert f"stopped by a signal after saving checkpoint {saved}; continue with --resume" in stdout


def test_ctrl_c_in_the_terminal_stops_with_a_checkpoint_and_resumes_to_the_same_end(face_shards, tmp_path,
                                                                                   subprocess_env):
    reference = write_job(tmp_path, "reference", face_shards, train={"steps": 60}, checkpoint={"every_steps": 0})
    assert run_job(reference, subprocess_env).returncode == 0
    config = write_job(tmp_path, "job", face_shards, train={"steps": 60}, checkpoint={"every_steps": 0})
    job, processes = start(config, subprocess_env)
    os.killpg(job.pid, signal.SIGINT)  # what a terminal sends to its foreground process group
    _, stderr = finish(job, processes)
    assert job.returncode == 0, stderr[-5000:]
    assert "Ctrl-C again within 3 s aborts without one" in stderr
    stop_checkpoint(config)
    resumed = run_job(config, subprocess_env, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    expected, got = final_parameters(reference, 60), final_parameters(config, 60)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert results(config)["evaluations"][-1] == results(reference)["evaluations"][-1]


@pytest.mark.parametrize("victim", ["launch", "the torchrun agent"])
def test_a_killed_parent_ends_in_a_checkpoint_not_in_orphans(face_shards, tmp_path, subprocess_env, victim):
    """SIGKILL (an OOM killer, kill -9) of launch or of the agent: the processes under it notice
    their parent is gone, checkpoint together and exit."""
    config = write_job(tmp_path, "job", face_shards, train={"steps": 400}, checkpoint={"every_steps": 0})
    job, processes = start(config, subprocess_env)
    RECEIVERS[victim](job)[0].kill()
    _, alive = psutil.wait_procs(processes, timeout=120)
    job.communicate(timeout=30)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"
    saved = stop_checkpoint(config)
    assert json.loads((checkpoint_dir(config) / saved / "complete.json").read_text())["for_stop"]
