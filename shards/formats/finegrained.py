"""Fine-grained recognition sets (REFERENCE.md §6c, §6d), with their official splits and
bounding boxes kept in each sample's json (boxes are not cropped).

  cub200-2010    SRC/images/<NNN.Class>/<file>.jpg, SRC/lists/{train,test}.txt,
                 SRC/annotations-mat/<NNN.Class>/<stem>.mat (MATLAB v5: bbox.left/top/right/bottom)
  cub200-2011    SRC[/CUB_200_2011]/images.txt, image_class_labels.txt, classes.txt,
                 train_test_split.txt, bounding_boxes.txt, images/<NNN.Class>/<file>.jpg
  stanford-dogs  SRC/Images/<wnid-Breed>/<file>.jpg, SRC[/lists]/{train,test}_list.mat
                 (MATLAB v5: file_list, labels), SRC/Annotation/<wnid-Breed>/<stem> (VOC XML)
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import scipy.io

from shards.items import ScanResult, Skip, SourceItem, make_key
from shards.options import BuildOptions


def _image_item(root: Path, relative: str, label: str, meta: dict) -> SourceItem:
    path = root / relative
    return SourceItem(make_key(relative), str(path), label, make_key(relative), path.stat().st_size,
                      {"source": relative, **meta})


def _loadmat(path: Path, fields: tuple[str, ...]) -> dict:
    try:
        content = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except (NotImplementedError, ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a readable MATLAB v5 file ({exc})") from None
    missing = [f for f in fields if f not in content]
    if missing:
        present = sorted(k for k in content if not k.startswith("__"))
        raise ValueError(f"{path}: missing variable(s) {', '.join(missing)} (has: {', '.join(present)})")
    return content


def scan_cub2010(src: Path, options: BuildOptions) -> ScanResult:
    skipped: list[Skip] = []
    items = []
    for split in ("train", "test"):
        listing = src / "lists" / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"{listing}: missing (CUB-200-2010 lists/)")
        for relative in (line.strip() for line in listing.read_text().splitlines()):
            if not relative:
                continue
            if not (src / "images" / relative).is_file():
                skipped.append(Skip(str(src / "images" / relative), f"listed in lists/{split}.txt but missing"))
                continue
            meta = {"official_split": split}
            box = _cub2010_box(src / "annotations-mat" / relative.rsplit(".", 1)[0], skipped)
            if box:
                meta["bbox"] = box
            items.append(_image_item(src / "images", relative, relative.split("/", 1)[0], meta))
    return ScanResult(items, skipped)


def _cub2010_box(stem: Path, skipped: list[Skip]) -> list[float] | None:
    path = stem.with_suffix(".mat")
    if not path.is_file():
        return None
    try:
        box = _loadmat(path, ("bbox",))["bbox"]
        left, top, right, bottom = (float(getattr(box, f)) for f in ("left", "top", "right", "bottom"))
    except (ValueError, AttributeError) as exc:
        skipped.append(Skip(str(path), f"bounding box unreadable, image kept without it ({exc})"))
        return None
    return [left, top, right - left, bottom - top]  # x, y, w, h like CUB-2011


def _table(path: Path, columns: int) -> dict[str, list[str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    table = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split(maxsplit=columns - 1)
        if not fields:
            continue
        if len(fields) != columns:
            raise ValueError(f"{path}:{number}: expected {columns} fields, got {len(fields)}")
        table[fields[0]] = fields[1:]
    return table


def scan_cub2011(src: Path, options: BuildOptions) -> ScanResult:
    root = src / "CUB_200_2011" if (src / "CUB_200_2011").is_dir() else src
    images = _table(root / "images.txt", 2)
    labels = _table(root / "image_class_labels.txt", 2)
    classes = _table(root / "classes.txt", 2)
    splits = _table(root / "train_test_split.txt", 2)
    boxes = _table(root / "bounding_boxes.txt", 5)
    skipped: list[Skip] = []
    items = []
    for image_id, (relative,) in images.items():
        if not (root / "images" / relative).is_file():
            skipped.append(Skip(str(root / "images" / relative), "listed in images.txt but missing"))
            continue
        try:
            label = classes[labels[image_id][0]][0]
            split = {"1": "train", "0": "test"}[splits[image_id][0]]
        except KeyError:
            skipped.append(Skip(str(root / "images" / relative), f"image id {image_id} has no class or split"))
            continue
        meta = {"official_split": split, "image_id": int(image_id)}
        if image_id in boxes:
            meta["bbox"] = [float(v) for v in boxes[image_id]]
        items.append(_image_item(root / "images", relative, label, meta))
    return ScanResult(items, skipped)


def scan_stanford_dogs(src: Path, options: BuildOptions) -> ScanResult:
    lists = src / "lists" if (src / "lists" / "train_list.mat").is_file() else src
    skipped: list[Skip] = []
    items = []
    for split in ("train", "test"):
        content = _loadmat(lists / f"{split}_list.mat", ("file_list", "labels"))
        files, labels = np.atleast_1d(content["file_list"]), np.atleast_1d(content["labels"])
        if len(files) != len(labels):
            raise ValueError(f"{lists / f'{split}_list.mat'}: {len(files)} files but {len(labels)} labels")
        for relative in (str(f) for f in files):
            if not (src / "Images" / relative).is_file():
                skipped.append(Skip(str(src / "Images" / relative), f"listed in {split}_list.mat but missing"))
                continue
            meta = {"official_split": split}
            boxes = _voc_boxes(src / "Annotation" / relative.rsplit(".", 1)[0], skipped)
            if boxes:
                meta["bboxes"] = boxes
            items.append(_image_item(src / "Images", relative, relative.split("/", 1)[0], meta))
    return ScanResult(items, skipped)


def _voc_boxes(path: Path, skipped: list[Skip]) -> list[list[float]]:
    """Every <object><bndbox> as [xmin, ymin, xmax, ymax]."""
    if not path.is_file():
        return []
    try:
        tree = ET.parse(path)
        return [[float(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
                for box in tree.iter("bndbox")]
    except (ET.ParseError, TypeError, ValueError) as exc:
        skipped.append(Skip(str(path), f"annotation unreadable, image kept without boxes ({exc})"))
        return []
