"""Figshare brain-tumour MRI (Cheng et al.; REFERENCE.md §6a).

SRC holds ``N.mat`` files (MATLAB v7.3 = HDF5 with a 512-byte user block; group ``cjdata``
with label, PID, image, tumorBorder, tumorMask, the arrays stored transposed), in any
sub-folders (the four published zips unpacked), and optionally ``cvind.mat`` (the official
patient-disjoint 5-fold assignment).  Images are written losslessly as 16-bit greyscale PNG
(no windowing), the mask as an 8-bit PNG (0/255) in the ``mask.png`` field.  MRI intensities
have no absolute scale, so the manifest tells the reader to map them per image (``minmax``,
the MONAI/medical default, REFERENCE.md §11.5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from shards.imaging import SampleError, describe, encode, sixteen_bit
from shards.items import ScanResult, Skip, SourceItem, make_key
from shards.options import BuildOptions

LABELS = {1: "meningioma", 2: "glioma", 3: "pituitary"}
LABEL_ORDER = tuple(LABELS.values())
INTENSITY = "minmax"
FIELDS = ("label", "PID", "image", "tumorBorder", "tumorMask")


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError:
        raise SampleError("not a MATLAB v7.3 (HDF5) file") from None


def _read_header(path: Path) -> tuple[int, str]:
    """(label, patient id) of one slice file; SampleError names what is wrong."""
    with _open(path) as handle:
        if "cjdata" not in handle:
            raise SampleError("no 'cjdata' struct")
        data = handle["cjdata"]
        missing = [f for f in FIELDS if f not in data]
        if missing:
            raise SampleError(f"cjdata lacks field(s) {', '.join(missing)}")
        label = int(np.asarray(data["label"]).ravel()[0])
        if label not in LABELS:
            raise SampleError(f"label {label} is not 1, 2 or 3")
        patient = "".join(map(chr, np.asarray(data["PID"]).ravel()))
    return label, patient


def _read_folds(path: Path, skipped: list[Skip]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with _open(path) as handle:
            return np.asarray(handle["cvind"]).ravel().astype(int)
    except (SampleError, KeyError) as exc:
        skipped.append(Skip(str(path), f"cvind.mat unusable ({exc}); folds not recorded"))
        return None


def scan_figshare_tumor(src: Path, options: BuildOptions) -> ScanResult:
    skipped: list[Skip] = []
    folds = _read_folds(src / "cvind.mat", skipped)
    files = sorted((p for p in src.rglob("*.mat") if p.name != "cvind.mat"),
                   key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.name))
    items = []
    for path in files:
        try:
            label, patient = _read_header(path)
        except SampleError as exc:
            skipped.append(Skip(str(path), str(exc)))
            continue
        meta: dict[str, Any] = {"source": path.relative_to(src).as_posix(), "patient": patient}
        if folds is not None and path.stem.isdigit() and int(path.stem) <= len(folds):
            meta["fold"] = int(folds[int(path.stem) - 1])
        items.append(SourceItem(make_key(f"tumor/{path.stem}"), str(path), LABELS[label], patient,
                                path.stat().st_size, meta))
    return ScanResult(items, skipped)


def render_tumor(item: SourceItem, options: BuildOptions, aligner) -> tuple[dict[str, bytes], dict]:
    with _open(Path(item.path)) as handle:
        data = handle["cjdata"]
        image = np.asarray(data["image"]).T  # MATLAB is column-major
        mask = np.asarray(data["tumorMask"]).T
        border = np.asarray(data["tumorBorder"]).ravel().tolist()
    if image.ndim != 2 or mask.shape != image.shape:
        raise SampleError(f"image {image.shape} and mask {mask.shape} are not one 2-D slice")
    slice_ = sixteen_bit(image)
    meta = {"shape": list(image.shape), "tumor_border": border, "encoding": "16-bit greyscale PNG, raw intensities",
            "stored_size": list(slice_.size), **describe(slice_, options.min_size)}
    mask_png = encode(Image.fromarray((mask > 0).astype(np.uint8) * 255), "png", options.quality)
    return {"png": encode(slice_, "png", options.quality), "mask.png": mask_png}, meta
