"""One job per run directory: an exclusive ``flock`` on ``<run_dir>/run.lock``.

Held by ``launch`` on the first node for the whole job (it tells the processes it starts so
through LOCK_HELD_ENV), or by rank 0 when the job was started without ``launch`` (a bare
torchrun, a SLURM script).  The kernel drops the lock when its holder dies, however it dies,
so a stale lock file never blocks; the file's text only names the holder for the message.
Over NFS, flock is emulated with the server's byte-range locks (NFSv4): it still excludes
jobs on other nodes.  Torch-free: launch and the runtime both use it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from types import TracebackType

from launcher.errors import JobError
from launcher.run_dir import RunDir

LOCK_HELD_ENV = {"FACETRAIN_RUN_LOCK": "launch"}
"""Set by ``launch`` for the processes it starts: the run directory is locked already."""


def held_by_launch(environ: dict[str, str] | os._Environ[str]) -> bool:
    return all(environ.get(key) == value for key, value in LOCK_HELD_ENV.items())


class RunDirLock:
    """``with RunDirLock(run_dir, "launch"):`` the job's run directory, or a JobError naming the
    directory and the process (pid, host, start time) that holds it."""

    def __init__(self, run_dir: RunDir, holder: str):
        self.run_dir = run_dir
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> None:
        path = self.run_dir.lock
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = describe(path.read_text())
            raise JobError(f"{self.run_dir.root}: another job is running in this run directory ({holder}); "
                           "wait for it to end, stop it, or choose another run_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "holder": self.holder,
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": sys.argv}).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the lock
            self._fd = None

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


def describe(text: str) -> str:
    """The holder, as the lock file names it."""
    try:
        holder = json.loads(text)
        return f"{holder['holder']} pid {holder['pid']} on host {holder['host']}, since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown: the lock file was just created"
