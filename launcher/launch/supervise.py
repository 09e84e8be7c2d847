"""``launch`` stays the parent of the launcher it starts, so that a stop signal sent to it
(a scheduler's SIGTERM, SLURM's SIGUSR1 warning, SIGHUP) reaches the job, and a stop that
ended in a saved checkpoint is reported as success.

torchrun's agent passes the signal on to the workers (``--signals-to-handle``), which save
at the next step boundary and exit 0; the agent itself then exits non-zero. Here that case
becomes exit 0 with a line saying how to continue, whoever received the signal (``launch``,
the agent, a worker): the checkpoint's marker says it was saved for a stop.
"""

from __future__ import annotations

import signal
import subprocess
import time

from launcher.run_dir import RunDir

# SIGINT is not forwarded: a terminal's Ctrl-C already reaches every process of the group.
FORWARDED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP)


def run_supervised(command: list[str], env: dict[str, str], run_dir: RunDir) -> int:
    started = time.time()
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, frame) -> None:
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code != 0 and (saved := stop_checkpoint_since(run_dir, started)):
        print(f"launch: stopped by a signal after saving checkpoint {saved}; continue with --resume", flush=True)
        return 0
    return code


def stop_checkpoint_since(run_dir: RunDir, since: float) -> str | None:
    """The newest complete checkpoint if this job saved it for a stop signal."""
    tags = run_dir.complete_tags()
    if not tags:
        return None
    marker = run_dir.read_marker(tags[-1])
    return tags[-1] if marker.get("for_stop") and marker["saved_at"] >= since else None
