"""What a rank records when it fails, so that ``launch`` can say which failed first and why.

torchrun's own report lists every rank's exit code but no error text, and the ranks that fail
because another one died ("a collective failed") often exit first from its point of view.
Each rank writes one small JSON file (``RunDir.failure_record``); ``launch`` reads them after
the job ends.  Torch-free: both sides use it.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

from launcher.run_dir import RunDir
from shards.files import write_text_atomic


def record_failure(run_dir: RunDir, rank: int, message: str, after_a_peer_died: bool) -> None:
    """Best effort: a full disk must not hide the error it is about."""
    try:
        run_dir.failure_record(rank).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir.failure_record(rank), json.dumps({
            "rank": rank, "time": time.time(), "message": message.strip().splitlines()[0] if message.strip() else "",
            "after_a_peer_died": after_a_peer_died}))
    except OSError:
        pass


def clear_failures(run_dir: RunDir) -> None:
    shutil.rmtree(run_dir.failures, ignore_errors=True)


def first_failure(run_dir: RunDir) -> dict[str, Any] | None:
    """The failure that came first: the earliest of those that did not follow a peer's death,
    else the earliest of all."""
    records = []
    for path in sorted(run_dir.failures.glob("rank*.json")) if run_dir.failures.is_dir() else []:
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    if not records:
        return None
    return min(records, key=lambda r: (r["after_a_peer_died"], r["time"]))


def failure_summary(run_dir: RunDir, continue_command: str) -> str:
    """Lines for the end of a failed job: the first failure, the newest checkpoint, what to run."""
    first = first_failure(run_dir)
    if first is None:
        cause = ("launch: the job failed, and no rank recorded an error (killed by a signal or out of memory?); "
                 "the agent's report above gives each rank's exit code")
    else:
        cause = f"launch: the job failed; rank {first['rank']} first: {first['message']}"
    return f"{cause}\n{how_to_continue(run_dir, continue_command)}"


def how_to_continue(run_dir: RunDir, continue_command: str) -> str:
    tags = run_dir.complete_tags()
    if tags:
        return f"launch: newest complete checkpoint {tags[-1]}; continue with: {continue_command} --resume"
    return f"launch: no complete checkpoint yet; start again with: {continue_command}"
