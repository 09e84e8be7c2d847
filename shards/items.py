"""What a format scanner hands to the builder: source items and the inputs it skipped."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_SEPARATORS = str.maketrans("./", "__")
MAX_KEY = 90
"""Longest key: with the longest field suffix (``.mask.png``) a member name still fits the
100-byte name field of a plain ustar header."""
HASH_CHARS = 10
"""Hex digits of sha256 added to a key: 40 bits, so keys that share a readable part (every
``001`` of a set of CJK-named identities) stay distinct in practice; ``unique_keys`` resolves
the rest."""
IMAGE_FIELDS = ("jpg", "png")
"""Sample fields that hold the encoded image."""


@dataclass(frozen=True)
class SourceItem:
    """One sample to be written: where it comes from and what it is."""

    key: str
    """WebDataset-safe (no dots or slashes): ``make_key`` of the relative path; made unique
    over the whole scan by ``unique_keys``."""
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
    """A WebDataset key from a relative path, stable for any file name.

    webdataset splits keys from extensions at the first dot, so the extension is dropped and
    dots and slashes become underscores: plain ASCII paths keep exactly that readable key
    (``0000045/001.jpg`` -> ``0000045_001``).  Any other path (non-ASCII, spaces or other
    punctuation, runs or edges that collapse, longer than MAX_KEY) keeps what is readable of it
    (accents folded to ASCII, the rest underscores, cut to MAX_KEY) plus a hash of the whole
    path: ``李雷/001.jpg`` -> ``001_<hash>``, ``José/001.jpg`` -> ``Jose_001_<hash>``.
    """
    last = relative_path.rsplit("/", 1)[-1]
    stem = relative_path.rsplit(".", 1)[0] if "." in last else relative_path
    folded = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    readable = _UNSAFE.sub("_", folded).strip("_")
    if readable and readable == stem.translate(_SEPARATORS) and len(readable) <= MAX_KEY:
        return readable
    return with_hash(readable, relative_path)


def with_hash(readable: str, text: str) -> str:
    """``readable`` (cut so the whole key fits MAX_KEY) plus a short hash of ``text``."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:HASH_CHARS]
    head = readable[: MAX_KEY - HASH_CHARS - 1].rstrip("_")
    return f"{head}_{digest}" if head else digest


def unique_keys(items: list[SourceItem], root: Path) -> list[SourceItem]:
    """The items sorted by key, every key unique, none dropped.

    Plain keys can still coincide (``a_b/1.jpg``, ``a.b/1.jpg`` and ``a_b/1.png`` are all
    ``a_b_1``): then each of those items gets its key plus a hash of its own path relative to
    ``root`` (a key already taken gets another hash, of the path and a counter).  Items are
    renamed in sorted order of (key, path), so keys depend on what is scanned, never on the
    order of scanning.
    """
    sharing: dict[str, list[SourceItem]] = {}
    for item in items:
        sharing.setdefault(item.key, []).append(item)
    kept = [group[0] for group in sharing.values() if len(group) == 1]
    taken = {item.key for item in kept}
    colliding = sorted(((i.key, Path(i.path).relative_to(root).as_posix(), i)
                        for group in sharing.values() if len(group) > 1 for i in group), key=lambda c: c[:2])
    for _, source, item in colliding:
        key, attempt = with_hash(item.key, source), 0
        while key in taken:  # another path's hash, or a file named like one: try the next
            attempt += 1
            key = with_hash(item.key, f"{source}\n{attempt}")
        taken.add(key)
        kept.append(dataclasses.replace(item, key=key))
    return sorted(kept, key=lambda i: i.key)


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
