"""What a format scanner hands to the builder: source items and the inputs it skipped."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
IMAGE_FIELDS = ("jpg", "png")
"""Sample fields that hold the encoded image."""


@dataclass(frozen=True)
class SourceItem:
    """One sample to be written: where it comes from and what it is."""

    key: str
    """Unique, WebDataset-safe (no dots or slashes): ``make_key`` of the relative path."""
    path: str
    """Source file, for messages and the sample's json."""
    label: str
    """Class or identity name; ids come from the manifest's label table."""
    group: str
    """The unit that must never straddle splits: identity (faces) or patient (medical)."""
    size: int
    """Source bytes, used to plan shard sizes before anything is decoded."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Extra json fields: bbox, official split, fold, coordinates, ..."""


@dataclass(frozen=True)
class Skip:
    """An input that was not written, and why."""

    path: str
    reason: str


@dataclass
class ScanResult:
    items: list[SourceItem]
    skipped: list[Skip] = field(default_factory=list)
    flagged: list[Skip] = field(default_factory=list)
    """Inputs kept but worth a look (e.g. an identity with a single image)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Format-specific manifest sections (e.g. LFW pairs)."""


def make_key(relative_path: str) -> str:
    """A WebDataset key from a relative path: webdataset splits keys from extensions at the
    first dot, so dots, slashes and other punctuation become underscores."""
    stem = relative_path.rsplit(".", 1)[0] if "." in relative_path.rsplit("/", 1)[-1] else relative_path
    return _UNSAFE.sub("_", stem).strip("_")


def is_utf8(name: str) -> bool:
    """False for file names that were not valid UTF-8 on disk (os.listdir surrogate-escapes them)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def printable(path: str) -> str:
    """A path safe to print and to store in JSON, even if its bytes were not UTF-8."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
