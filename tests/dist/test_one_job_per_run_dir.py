"""Two jobs started on one run directory: the second is refused, whichever way it is started, and
the first finishes as if alone."""

from __future__ import annotations

import subprocess
import sys

from launcher.run_dir import RunDir
from tests.dist.jobs import launch_command, results, run_job, wait_for, write_job


def test_a_second_job_on_a_run_directory_in_use_is_refused_and_the_first_finishes(face_shards, tmp_path,
                                                                                  subprocess_env):
    config = write_job(tmp_path, "job", face_shards, train={"steps": 100, "log_every": 20})
    first = subprocess.Popen(launch_command(config), env=subprocess_env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lock = RunDir(tmp_path / "job").lock
    wait_for(lambda: lock.is_file() and f'"pid": {first.pid}' in lock.read_text(), timeout=60,
             what="the first launch holding the lock")

    second = run_job(config, subprocess_env, "--resume", timeout=60)
    assert second.returncode == 2 and second.stdout == ""
    assert second.stderr.strip() == second.stderr.strip().splitlines()[0]  # one line
    assert "another job is running in this run directory (launch pid" in second.stderr

    # Started without launch (a bare torchrun): rank 0 asks for the lock, and every rank stops.
    bare_env = {key: value for key, value in subprocess_env.items() if key != "FACETRAIN_RUN_LOCK"}
    bare = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "launcher.runtime.train", str(config), "--resume"],
                          env=bare_env, capture_output=True, text=True, timeout=180)
    assert bare.returncode != 0
    assert bare.stderr.count("another job is running in this run directory (launch pid") == 2, bare.stderr[-3000:]

    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-4000:]
    assert results(config)["steps"] == 100
