"""The signals that ask a job to stop with a checkpoint: ``launch`` forwards them, every rank heeds
them (launcher/runtime/loop.py StopSignal).  Torch-free: both sides use it."""

import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
"""SIGTERM (schedulers, ``docker stop``), SIGINT (Ctrl-C), SIGUSR1 (SLURM's pre-emption warning),
SIGHUP (the terminal went away).  shards/loader.py's reader workers hold the same set (shards
imports nothing of the launcher)."""

ABORT_WINDOW_S = 3.0
"""A second Ctrl-C within this many seconds aborts at once, without a checkpoint."""
