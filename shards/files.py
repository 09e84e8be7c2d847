"""Atomic file writes, for every file another process may read while it is being replaced
(manifests, results.json, Prometheus targets, checkpoint markers).  Standard library only: the
training ranks import it, and the shard builder's dependencies must not come along."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside ``path``, flush to disk, then rename over it: a reader sees the old file or
    the new one, never half of one, even after a crash."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, value: Any, indent: int = 1) -> None:
    write_text_atomic(path, json.dumps(value, indent=indent))
