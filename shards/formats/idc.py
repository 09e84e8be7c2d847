"""Breast histopathology IDC patches (Kaggle, REFERENCE.md §6b).

SRC/<patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<C>.png; the archive also ships a second
copy of everything under IDC_regular_ps50_idx5/, which is counted once.  Patches smaller than
50x50 (slide edges) are padded with white to 50x50; the json records their original size.
"""

from __future__ import annotations

import re
from pathlib import Path

from shards.formats.folders import class_folders, subfolders
from shards.imaging import decode, describe, encode, pad_to
from shards.items import ScanResult, Skip, SourceItem, make_key
from shards.options import BuildOptions
from shards.render import read_source

NAME = re.compile(r"^(\d+)_idx5_x(\d+)_y(\d+)_class([01])\.png$")
DUPLICATE_COPY = "IDC_regular_ps50_idx5"
LABEL_ORDER = ("idc_negative", "idc_positive")
PATCH = 50


def scan_idc(src: Path, options: BuildOptions) -> ScanResult:
    skipped: list[Skip] = []
    items: dict[str, SourceItem] = {}
    duplicates = 0
    roots = [src] + ([src / DUPLICATE_COPY] if (src / DUPLICATE_COPY).is_dir() else [])
    for root in roots:
        for patient in subfolders(root, skipped):
            if patient == DUPLICATE_COPY:
                continue
            for class_dir, files in class_folders(root / patient, skipped):
                for path in files:
                    match = NAME.match(path.name)
                    if not match:
                        skipped.append(Skip(str(path), "name is not <patient>_idx5_x<X>_y<Y>_class<C>.png"))
                    elif match[1] != patient or match[4] != class_dir:
                        skipped.append(Skip(str(path), f"name says patient {match[1]} class {match[4]}, "
                                                       f"folder says {patient}/{class_dir}"))
                    elif path.name in items:
                        duplicates += 1
                    else:
                        items[path.name] = SourceItem(
                            make_key(f"{patient}/{path.name}"), str(path), LABEL_ORDER[int(class_dir)],
                            patient, path.stat().st_size,
                            {"source": path.relative_to(src).as_posix(), "patient": patient,
                             "x": int(match[2]), "y": int(match[3])})
    return ScanResult(list(items.values()), skipped, extra={"duplicate_copies_ignored": duplicates})


def render_patch(item: SourceItem, options: BuildOptions, aligner) -> tuple[dict[str, bytes], dict]:
    data = read_source(item)
    image = decode(data)
    meta = {**describe(image, options.min_size), "stored_size": [PATCH, PATCH]}  # padded when smaller
    if image.size == (PATCH, PATCH):
        return {"png": data}, meta
    meta["padded_from"] = list(image.size)
    return {"png": encode(pad_to(image, PATCH, PATCH), "png", options.quality)}, meta
