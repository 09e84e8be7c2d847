"""manifest.json: what a shard folder holds, and reading it back with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class ManifestError(Exception):
    """A shard folder without a usable manifest."""


def load_manifest(out: Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST
    if not path.is_file():
        partial = (Path(out) / ".build").is_dir()
        raise ManifestError(f"{path}: missing" + (" (the build did not finish: run shards build again)"
                                                   if partial else ""))
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ManifestError(f"{path}: format_version {version!r}, this code reads {FORMAT_VERSION}")
    return manifest
