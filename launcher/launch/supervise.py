"""``launch`` stays the parent of the launcher it starts, so that a stop signal sent to it
(a scheduler's SIGTERM, SLURM's SIGUSR1 warning, SIGHUP) reaches the job, and a stop that
ended in a saved checkpoint is reported as success.

torchrun's agent passes the signal on to the workers (``--signals-to-handle``), which save
at the next step boundary and exit 0; the agent itself then exits non-zero. Here that case
becomes exit 0 with a line saying how to continue, whoever received the signal (``launch``,
the agent, a worker): the checkpoint's marker says it was saved for a stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import signal
import subprocess
import sys
import time

import psutil

from launcher.failures import clear_failures, failure_summary, first_failure, how_to_continue
from launcher.launch.agent import RENDEZVOUS_FAILED
from launcher.run_dir import RunDir
from launcher.stops import ABORT_WINDOW_S, SIGNALS


def _die_with_launch() -> None:
    """preexec_fn of the launcher ``launch`` starts: SIGTERM it when ``launch`` dies (even of SIGKILL),
    so a killed ``launch`` still ends in a checkpoint rather than in orphans training on."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def run_supervised(command: list[str], env: dict[str, str], run_dir: RunDir, continue_command: str) -> int:
    """Run the launcher as a child in a session of its own (a terminal's Ctrl-C reaches it once,
    through this process, not twice); stop signals are forwarded.  A failure ends with a summary
    (the rank that failed first and why, the newest checkpoint, ``continue_command``)."""
    started = time.time()
    clear_failures(run_dir)
    child = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_die_with_launch)
    interrupted_at = -math.inf

    def forward(signum: int, frame) -> None:
        nonlocal interrupted_at
        if signum == signal.SIGINT:
            if time.monotonic() - interrupted_at < ABORT_WINDOW_S:
                print("launch: second Ctrl-C: aborting without a checkpoint", file=sys.stderr, flush=True)
                kill_tree(child.pid)
                return
            interrupted_at = time.monotonic()
            print(f"launch: stopping at the next step with a checkpoint (Ctrl-C again within {ABORT_WINDOW_S:.0f} s "
                  "aborts without one)", file=sys.stderr, flush=True)
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in SIGNALS}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code != 0 and (saved := stop_checkpoint_since(run_dir, started)):
        print(f"launch: stopped by a signal after saving checkpoint {saved}; continue with --resume", flush=True)
        return 0
    if code == RENDEZVOUS_FAILED and first_failure(run_dir) is None:  # the agent said why, and no rank failed
        print(how_to_continue(run_dir, continue_command), file=sys.stderr, flush=True)
    elif code != 0:
        print(failure_summary(run_dir, continue_command), file=sys.stderr, flush=True)
    return code


def kill_tree(pid: int) -> list[psutil.Process]:
    """SIGKILL a process and everything under it (not a process group: torchrun starts each worker
    in a session of its own); returns them, for a caller that waits."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    return processes


def stop_checkpoint_since(run_dir: RunDir, since: float) -> str | None:
    """The newest complete checkpoint if this job saved it for a stop signal."""
    tags = run_dir.complete_tags()
    if not tags:
        return None
    marker = run_dir.read_marker(tags[-1])
    return tags[-1] if marker.get("for_stop") and marker["saved_at"] >= since else None
