"""Rank-aware logging: rank 0 reports progress, every rank reports its warnings and errors."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(rank: int, level: str | None = None) -> None:
    level = level or os.environ.get("FACETRAIN_LOG_LEVEL", "INFO")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if rank == 0 else logging.WARNING)
    # DeepSpeed installs its own handler and logs at INFO on every rank.
    for name in ("DeepSpeed", "deepspeed"):
        logging.getLogger(name).setLevel(logging.WARNING)
