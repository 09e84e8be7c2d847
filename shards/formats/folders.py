"""Scanning class-per-folder trees, shared by the face and fine-grained formats."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from shards.imaging import IMAGE_EXTENSIONS
from shards.items import Skip, is_utf8, printable


def image_files(folder: Path, skipped: list[Skip]) -> Iterator[Path]:
    """Image files directly inside ``folder``, sorted; every other entry is recorded as skipped."""
    for name in sorted(os.listdir(folder)):
        path = folder / name
        if not is_utf8(name):
            skipped.append(Skip(printable(str(path)), "file name is not valid UTF-8"))
        elif path.is_dir():
            continue
        elif path.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append(Skip(str(path), f"not an image file (extension {path.suffix or 'none'!r})"))
        else:
            yield path


def subfolders(root: Path, skipped: list[Skip]) -> Iterator[str]:
    """Names of the sub-folders of ``root``, sorted; non-UTF-8 names are recorded as skipped."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    for name in sorted(os.listdir(root)):
        if not (root / name).is_dir():
            continue
        if is_utf8(name):
            yield name
        else:
            skipped.append(Skip(printable(str(root / name)), "folder name is not valid UTF-8"))


def class_folders(root: Path, skipped: list[Skip]) -> Iterator[tuple[str, list[Path]]]:
    """(folder name, its image files) for every sub-folder of ``root``; empty ones are skipped."""
    for name in subfolders(root, skipped):
        files = list(image_files(root / name, skipped))
        if files:
            yield name, files
        else:
            skipped.append(Skip(str(root / name), "empty folder: no image files"))
