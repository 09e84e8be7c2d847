"""One job per run directory: a second ``launch`` on a run directory in use is refused at once,
naming the holder, before it spawns anything; a holder killed with SIGKILL leaves no stale lock."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from launcher.errors import JobError
from launcher.run_dir import RunDir
from launcher.run_lock import RunDirLock
from tests.dist.jobs import write_job

HOLDER = """
import sys, time
from launcher.run_dir import RunDir
from launcher.run_lock import RunDirLock
from tests.dist.jobs import write_job
with RunDirLock(RunDir(sys.argv[1]), "a test holder"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path, subprocess_env):
    """Another process holding tmp_path/run's lock."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], env=subprocess_env,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    yield process
    process.kill()
    process.wait()


def test_a_held_run_directory_is_refused_naming_the_holder_until_the_holder_dies(tmp_path, holder):
    run_dir = RunDir(tmp_path / "run")
    with pytest.raises(JobError) as refused:
        RunDirLock(run_dir, "a second job").acquire()
    assert str(refused.value) == (
        f"{run_dir.root}: another job is running in this run directory (a test holder pid {holder.pid} on host "
        f"{socket.gethostname()}, since {refused.value.args[0].split('since ')[1].split(')')[0]}); "
        "wait for it to end, stop it, or choose another run_dir")
    holder.kill()  # no clean-up runs: the kernel drops the lock with its holder
    holder.wait()
    assert run_dir.lock.exists()
    with RunDirLock(run_dir, "the next job"):
        assert '"holder": "the next job"' in run_dir.lock.read_text()
    with RunDirLock(run_dir, "and the one after it"):  # released on exit
        pass


def test_launch_on_a_held_run_directory_fails_at_once_with_one_line_and_starts_nothing(tmp_path, holder, face_shards,
                                                                                       subprocess_env):
    config = write_job(tmp_path, "run", face_shards)
    launch = subprocess.run([sys.executable, "-m", "launcher", str(config), "--fresh"], env=subprocess_env,
                            capture_output=True, text=True, timeout=60)
    assert launch.returncode == 2
    assert launch.stdout == ""  # no command shown, none started
    lines = launch.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'run'}: another job is running"), lines
    assert f"pid {holder.pid}" in lines[0]
