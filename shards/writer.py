"""Writing one planned shard: render every item, write the tar under a temporary name, hash
it, rename it into place, then record the result.  Runs in worker processes."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import webdataset as wds

from shards.files import write_json_atomic
from shards.formats import FORMATS
from shards.geometry import tally_sides
from shards.imaging import SampleError, tally_pixels
from shards.options import BuildOptions
from shards.plan import ShardPlan

# A fixed member mtime: the same input and options give byte-identical shards.
TAR_MTIME = 946684800  # 2000-01-01

_aligners: dict = {}


def _get_aligner(options: BuildOptions):
    """One MTCNN per worker process and template, created on first use."""
    if options.align != "mtcnn":
        return None
    if options.template not in _aligners:
        from shards.align import FaceAligner

        _aligners[options.template] = FaceAligner(options.template)
    return _aligners[options.template]


def one_thread_per_worker() -> None:
    """Pool initializer: one torch thread per worker process, or MTCNN oversubscribes the cores."""
    import torch

    torch.set_num_threads(1)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


RESULT_FIELDS = frozenset({"name", "split", "count", "bytes", "sha256", "labels", "skipped", "flagged", "pixels",
                           "sides", "aligned", "unaligned_kept"})
"""What a shard's result record holds; a record of an older build without some is written again."""


def write_shard(plan: ShardPlan, options: BuildOptions, label_ids: dict[str, int]) -> dict[str, Any]:
    fmt = FORMATS[options.format]
    aligner = _get_aligner(options)
    final = options.out / plan.name
    partial = final.with_name(final.name + ".partial")
    skipped, flagged, pixels, sizes, labels, aligned = [], [], [], [], Counter(), Counter()
    with open(partial, "wb") as stream, wds.TarWriter(stream, encoder=False, mtime=TAR_MTIME) as tar:
        for item in plan.items:
            try:
                fields, meta = fmt.render(item, options, aligner)
            except SampleError as exc:
                skipped.append({"path": item.path, "reason": str(exc)})
                continue
            record = {"key": item.key, "label": item.label, "group": item.group, "split": plan.split,
                      **item.meta, **meta}
            tar.write({"__key__": item.key, **fields, "cls": str(label_ids[item.label]).encode(),
                       "json": json.dumps(record).encode()})
            labels[item.label] += 1
            pixels.append(meta["pixels"])
            sizes.append(meta["stored_size"])
            flagged += [{"path": item.path, "reason": reason} for reason in meta.get("flags", ())]
            if "aligned" in meta:
                aligned[meta["aligned"]] += 1
    os.replace(partial, final)
    result = {
        "name": plan.name, "split": plan.split, "count": sum(labels.values()),
        "bytes": final.stat().st_size, "sha256": sha256_of(final),
        "labels": dict(labels), "skipped": skipped, "flagged": flagged, "pixels": tally_pixels(pixels),
        "sides": tally_sides(sizes),
        "aligned": aligned[True], "unaligned_kept": aligned[False],
    }
    assert result.keys() == RESULT_FIELDS
    write_json_atomic(work_dir(options.out) / f"{plan.name}.json", result)
    return result


def work_dir(out: Path) -> Path:
    return out / ".build"
