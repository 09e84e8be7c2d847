"""``launch`` stays the parent of the launcher it starts, so that a stop signal sent to it
(a scheduler's SIGTERM, SLURM's SIGUSR1 warning) reaches the job, and a stop that ended in a
saved checkpoint is reported as success.

torchrun's agent passes the signal on to the workers (``--signals-to-handle``), which save
at the next step boundary and exit 0; the agent itself then exits non-zero. Here that case
becomes exit 0 with a line saying how to continue.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from launcher.checkpoint import COMPLETE_MARKER, complete_tags

# SIGINT is not forwarded: a terminal's Ctrl-C already reaches every process of the group.
FORWARDED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP)


def run_supervised(command: list[str], env: dict[str, str], checkpoints: Path) -> int:
    child = subprocess.Popen(command, env=env)
    stop_times: list[float] = []

    def forward(signum: int, frame) -> None:
        stop_times.append(time.time())
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code != 0 and stop_times and (saved := checkpoint_since(checkpoints, stop_times[0])):
        print(f"launch: stopped by a signal after saving checkpoint {saved}; continue with --resume", flush=True)
        return 0
    return code


def checkpoint_since(checkpoints: Path, since: float) -> str | None:
    """The newest complete checkpoint if it was completed at or after ``since``."""
    tags = complete_tags(checkpoints)
    if tags and (checkpoints / tags[-1] / COMPLETE_MARKER).stat().st_mtime >= since - 1:
        return tags[-1]
    return None
