"""A disk that fills up while a checkpoint is written: every rank stops with one line that says
so, the partial checkpoint is removed, and the previous one stays complete and resumable."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from tests.dist.jobs import kill_tree, write_job

CHECKPOINT_KB = 10_000
"""About what one checkpoint of the test job takes (9,996 kB measured)."""


def can_mount_in_a_namespace() -> bool:
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not can_mount_in_a_namespace(), reason="needs unshare and mount in a user namespace")
def test_a_full_disk_while_saving_is_named_and_the_previous_checkpoint_survives(face_shards, tmp_path,
                                                                                subprocess_env):
    disk = tmp_path / "disk"  # a 15 MB file system: room for one checkpoint, not for two
    disk.mkdir()
    config = write_job(tmp_path, "job", face_shards, train={"steps": 20, "eval_at_start": False},
                       checkpoint={"every_steps": 10, "keep_last": 1})
    job = yaml.safe_load(config.read_text())
    job["run_dir"] = str(disk / "job")
    config.write_text(yaml.safe_dump(job))
    checkpoints = disk / "job" / "checkpoints"
    script = (f"mount -t tmpfs -o size={CHECKPOINT_KB * 3 // 2}k tmpfs {disk} && "
              f"{shlex.quote(sys.executable)} -m launcher {config} --nproc 2; echo launch-exit=$?; "
              f"ls {checkpoints}; cat {checkpoints}/latest")
    proc = subprocess.Popen(["unshare", "--mount", "--map-root-user", "sh", "-c", script], env=subprocess_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # ranks that disagreed about a failed save would wait for each other forever
        stdout, stderr = proc.communicate(timeout=150)
    finally:
        kill_tree(proc.pid)
    assert "launch-exit=0" not in stdout, stdout[-3000:] + stderr[-3000:]
    message = (f"checkpoint step00000020 could not be written in {checkpoints} (rank 0: no space left on device)"
               "; the partial files were removed and the previous checkpoint step00000010 is intact; "
               "checkpoint.keep_last 1 needs room for 2 checkpoints while one is written; make room, then "
               "continue with --resume")
    assert message in stderr or message.replace("rank 0", "rank 1") in stderr, stderr[-5000:]
    listing = stdout.split("launch-exit=")[1].splitlines()[1:]
    assert "step00000010" in listing and not any("partial" in name or name == "step00000020" for name in listing)
    assert listing[-1] == "step00000010"  # latest still names it
    assert "Traceback" not in stderr.split("could not be written")[0][-2000:]
