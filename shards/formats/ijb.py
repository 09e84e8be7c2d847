"""IJB-B / IJB-C as insightface releases them (``IJB_release/IJBB``, ``IJB_release/IJBC``) -> one
"test" split of faces aligned from the published landmarks, plus the template pairs.

SRC is the IJBB or IJBC folder (``<set>`` = ijbb or ijbc):

* ``meta/<set>_face_tid_mid.txt``: ``<image> <template id> <media id>`` per image;
* ``meta/<set>_name_5pts_score.txt``: ``<image> x1 y1 ... x5 y5 <detector score>`` (eyes, nose tip,
  mouth corners in pixels of the loose crop);
* ``meta/<set>_template_pair_label.txt``: ``<template 1> <template 2> <label 1/0>``;
* ``loose_crop/<image>``.

insightface's ``recognition/_evaluation_/ijb/ijb_11.py`` pairs the two per-image files by line
number; here they are joined by image name, so a reordered file cannot mismatch them.  Each loose
crop is warped onto the 112x112 ArcFace template by the similarity transform of its five
landmarks (as insightface's ``skimage`` estimate + ``cv2.warpAffine``), no detector involved.
The pairs (IJB-C: 15.6M) and the per-image (template, media, detector score) that the evaluation
needs go to a side file in OUT (``SIDE_ARRAYS``), named by its sha256, which the manifest records.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from shards.align import TEMPLATES, align_to_template
from shards.items import ScanResult, Skip, SourceItem, make_key
from shards.options import BuildOptions
from shards.render import read_source, render_bytes

TEMPLATE = "arcface112"
LABEL = "unknown"
"""The one label of every image: the release's metadata names templates, not subjects."""
NAMES = {"ijbb": "IJB-B", "ijbc": "IJB-C"}
SIDE_ARRAYS = ("pairs", "keys", "template", "media", "detector_score")
"""The side file (``np.savez``): pairs (P, 3) int32 (template 1, template 2, label) in file order;
per written image its sample key (bytes), template, media (int32) and detector score (float64)."""


def meta_files(src: Path, prefix: str) -> dict[str, Path]:
    files = {kind: src / "meta" / f"{prefix}_{kind}.txt"
             for kind in ("face_tid_mid", "name_5pts_score", "template_pair_label")}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"no {path.relative_to(src)}: SRC must be insightface's IJB_release/"
                                    f"{prefix.upper()} folder (meta/ and loose_crop/)")
    return files


def fields_of(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(``file:line``, whitespace-separated fields) of every non-blank line."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if fields := line.split():
                yield f"{path}:{number}", fields


def read_landmarks(path: Path, skipped: list[Skip]) -> dict[str, tuple[np.ndarray, float]]:
    """image -> (five landmarks (5, 2), detector score); bad lines skipped with the reason."""
    found: dict[str, tuple[np.ndarray, float]] = {}
    for where, fields in fields_of(path):
        try:
            values = np.array([float(v) for v in fields[1:]]) if len(fields) == 12 else None
        except ValueError:
            values = None
        if values is None or not np.isfinite(values).all():
            skipped.append(Skip(where, "expected '<image> x1 y1 ... x5 y5 <detector score>' (12 numbers after "
                                       "the name, all finite)"))
        elif np.ptp(values[:10].reshape(5, 2), axis=0).max() == 0:  # one point: no transform to fit
            skipped.append(Skip(where, "the five landmarks coincide"))
        elif fields[0] in found:
            skipped.append(Skip(where, f"{fields[0]} listed twice"))
        else:
            found[fields[0]] = values[:10].reshape(5, 2), float(values[10])
    return found


def read_pairs(path: Path, skipped: list[Skip]) -> tuple[np.ndarray, int]:
    """(pairs (P, 3) int32 in file order, lines read), streamed: IJB-C lists 15.6M."""
    values, lines = array("i"), 0
    for where, fields in fields_of(path):
        lines += 1
        try:
            first, second, label = (int(v) for v in fields)
            if label not in (0, 1):
                raise ValueError
            values.extend((first, second, label))
        except (ValueError, OverflowError):  # wrong count, not integers, or beyond int32
            skipped.append(Skip(where, "expected '<template id> <template id> <label 0/1>'"))
    if not values:
        raise ValueError(f"{path}: no '<template id> <template id> <label 0/1>' line")
    return np.frombuffer(values, dtype=np.int32).reshape(-1, 3), lines


def scan_ijb(src: Path, options: BuildOptions) -> ScanResult:
    if options.align != "none":
        raise ValueError("its faces are aligned from the published landmarks: build without --align")
    prefix = options.format
    files = meta_files(src, prefix)
    skipped: list[Skip] = []
    landmarks = read_landmarks(files["name_5pts_score"], skipped)
    items, listed = [], set()
    for where, fields in fields_of(files["face_tid_mid"]):
        if options.limit is not None and len(items) >= options.limit:
            break  # the first N images in the release's order; pairs are then kept among them
        name = fields[0]
        try:
            template, media = (int(v) for v in fields[1:])
        except ValueError:  # wrong count or not integers
            skipped.append(Skip(where, "expected '<image> <template id> <media id>'"))
            continue
        if name in listed:
            skipped.append(Skip(where, f"{name} listed twice"))
            continue
        listed.add(name)
        path = src / "loose_crop" / name
        if name not in landmarks:
            skipped.append(Skip(str(path), f"no usable line in {files['name_5pts_score'].name}"))
            continue
        try:
            size = path.stat().st_size
        except OSError:
            skipped.append(Skip(str(path), "listed, not found in loose_crop/"))
            continue
        points, score = landmarks[name]
        items.append(SourceItem(make_key(f"{prefix}/{name}"), str(path), LABEL, prefix, size, {
            "source": f"loose_crop/{name}", "official_split": "test", "template": template,
            "media": media, "detector_score": score, "landmarks": points.tolist()}))
    if options.limit is None:  # with a limit, the rest of face_tid_mid is not read
        skipped += [Skip(str(files["name_5pts_score"]), f"{name}: in no template ({files['face_tid_mid'].name})")
                    for name in sorted(landmarks.keys() - listed)]
    items = first_of_each_key(items, skipped)
    pairs, lines = read_pairs(files["template_pair_label"], skipped)
    kept = keep_pairs(pairs, {i.meta["template"] for i in items}, files["template_pair_label"], skipped)
    side = write_side_file(options.out, prefix, kept, items)
    return ScanResult(items, skipped, extra={"ijb": {
        "set": NAMES[prefix], **side, "images": len(items), "templates": len({i.meta["template"] for i in items}),
        "media": len({(i.meta["template"], i.meta["media"]) for i in items}), "pairs": len(kept),
        "genuine_pairs": int(kept[:, 2].sum()), "pairs_in_file": lines, "pairs_dropped": len(pairs) - len(kept)}})


def first_of_each_key(items: list[SourceItem], skipped: list[Skip]) -> list[SourceItem]:
    """Names that make one key (``a.b.jpg``, ``a_b.jpg``) keep the first: the side file names
    images by key, so the build must not rename them (``unique_keys``)."""
    first: dict[str, SourceItem] = {}
    for item in items:
        if item.key in first:
            skipped.append(Skip(item.path, f"its sample key {item.key} is {first[item.key].meta['source']}'s"))
        else:
            first[item.key] = item
    return list(first.values())


def keep_pairs(pairs: np.ndarray, templates: set[int], path: Path, skipped: list[Skip]) -> np.ndarray:
    """The pairs whose two templates have an image; one skip per template without, with its count."""
    present = np.isin(pairs[:, :2], np.fromiter(templates, np.int64, len(templates)))
    absent, counts = np.unique(pairs[:, :2][~present], return_counts=True)
    skipped += [Skip(str(path), f"template {t} has no usable image: {n} pair(s) naming it dropped")
                for t, n in zip(absent.tolist(), counts.tolist(), strict=True)]
    return pairs[present.all(1)]


def write_side_file(out: Path, prefix: str, pairs: np.ndarray, items: list[SourceItem]) -> dict[str, str]:
    """The side file in OUT, named by its content: a build refused for OUT holding another build
    (``prepare_output``, after the scan) then leaves that build's file as it was."""
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f"{prefix}_side.npz.partial"
    with open(partial, "wb") as handle:
        np.savez(handle, pairs=pairs.astype(np.int32), keys=np.array([i.key for i in items], dtype="S"),
                 template=np.array([i.meta["template"] for i in items], np.int32),
                 media=np.array([i.meta["media"] for i in items], np.int32),
                 detector_score=np.array([i.meta["detector_score"] for i in items], np.float64))
    digest = sha256(partial)
    name = f"{prefix}_{digest[:12]}.npz"
    os.replace(partial, out / name)
    return {"side_file": name, "side_file_sha256": digest}


def sha256(path: Path) -> str:
    with open(path, "rb") as handle:  # not shards.writer's: it imports the format table
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_side_file(folder: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """The side file an IJB build's manifest names, checked against its sha256; ValueError if it is
    missing or differs (then rebuild)."""
    record = manifest["ijb"]
    path = Path(folder) / record["side_file"]
    if not path.is_file() or sha256(path) != record["side_file_sha256"]:
        raise ValueError(f"{path}: " + ("missing" if not path.is_file() else "not the file the manifest "
                                        "records (sha256 differs)") + ": run shards build again")
    with np.load(path, allow_pickle=False) as content:
        return {name: content[name] for name in SIDE_ARRAYS}


class PublishedLandmarks:
    """``FaceAligner``'s interface with the release's landmarks in place of MTCNN's."""

    def __init__(self, points_52: list[list[float]]):
        self.points = np.asarray(points_52, dtype=np.float64)
        self.template, self.size = TEMPLATES[TEMPLATE]

    def align(self, image: Any) -> tuple[Any, np.ndarray]:
        return align_to_template(image, self.points, self.template, self.size), self.points


def render_loose_crop(item: SourceItem, options: BuildOptions, aligner: Any) -> tuple[dict[str, bytes], dict]:
    return render_bytes(read_source(item), Path(item.path).suffix, item, options,
                        PublishedLandmarks(item.meta["landmarks"]))
