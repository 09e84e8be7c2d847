"""Face datasets: CASIA-WebFace, VGGFace2 and generic image folders (ORL/AT&T, FEI, ...).

Layouts (REFERENCE.md §6e, §6f):
  casia-webface  SRC/<7-digit id>/<NNN>.jpg, optional SRC/names.txt "<id> <Name>"
  vggface2       SRC/{train,test}/n<id>/<img>.jpg, SRC/meta/{train,test}_list.txt,
                 SRC/meta/identity_meta.csv, SRC/bb_landmark/loose_{bb,landmark}_{train,test}.csv
  imagefolder    SRC/<class>/<image> (ORL: s1/1.pgm); or a flat SRC/<id>-<n>.<ext> (FEI)
"""

from __future__ import annotations

import csv
from pathlib import Path

from shards.formats.folders import class_folders, image_files
from shards.items import ScanResult, Skip, SourceItem, make_key
from shards.options import BuildOptions


def _item(root: Path, path: Path, label: str, meta: dict) -> SourceItem:
    relative = path.relative_to(root).as_posix()
    return SourceItem(make_key(relative), str(path), label, label, path.stat().st_size,
                      {"source": relative, **meta})


def scan_casia(src: Path, options: BuildOptions) -> ScanResult:
    skipped: list[Skip] = []
    names = _read_names(src / "names.txt", skipped)
    items = [
        _item(src, path, identity, {"name": names[identity]} if identity in names else {})
        for identity, files in class_folders(src, skipped)
        for path in files
    ]
    flagged: list[Skip] = []
    return ScanResult(_with_attributes(items, options.attributes, flagged), skipped, flagged)


def scan_imagefolder(src: Path, options: BuildOptions) -> ScanResult:
    skipped: list[Skip] = []
    folders = list(class_folders(src, skipped))
    if folders:
        items = [_item(src, path, label, {}) for label, files in folders for path in files]
    else:  # flat FEI-style folder: the identity is the file name up to its last '-'
        skipped = []
        items = []
        for path in image_files(src, skipped):
            label, dash, _ = path.stem.rpartition("-")
            if dash and label:
                items.append(_item(src, path, label, {}))
            else:
                skipped.append(Skip(str(path), "flat layout needs <identity>-<n> file names"))
    flagged: list[Skip] = []
    return ScanResult(_with_attributes(items, options.attributes, flagged), skipped, flagged)


def scan_vggface2(src: Path, options: BuildOptions) -> ScanResult:
    skipped: list[Skip] = []
    identities = _read_identity_meta(src / "meta" / "identity_meta.csv", skipped)
    items = []
    for split in ("train", "test"):
        root = src / split
        if not root.is_dir():
            continue
        boxes = _read_table(src / "bb_landmark" / f"loose_bb_{split}.csv", skipped)
        landmarks = _read_table(src / "bb_landmark" / f"loose_landmark_{split}.csv", skipped)
        for relative in _listed_files(src, split, skipped):
            path = root / relative
            name_id = relative.rsplit(".", 1)[0]
            identity = relative.split("/", 1)[0]
            if not path.is_file():
                skipped.append(Skip(str(path), f"listed in meta/{split}_list.txt but missing"))
                continue
            meta = {"official_split": split, **identities.get(identity, {})}
            if name_id in boxes:
                meta["face_box"] = boxes[name_id]
            if name_id in landmarks:
                meta["loose_landmarks"] = landmarks[name_id]
            items.append(SourceItem(make_key(f"{split}/{relative}"), str(path), identity, identity,
                                    path.stat().st_size, {"source": f"{split}/{relative}", **meta}))
    if not items and not (src / "train").is_dir() and not (src / "test").is_dir():
        raise FileNotFoundError(f"{src}: no train/ or test/ folder (VGGFace2 layout)")
    flagged: list[Skip] = []
    return ScanResult(_with_attributes(items, options.attributes, flagged), skipped, flagged)


def _listed_files(src: Path, split: str, skipped: list[Skip]) -> list[str]:
    """meta/<split>_list.txt when present (the official list), else the folder tree."""
    listing = src / "meta" / f"{split}_list.txt"
    if listing.is_file():
        return [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return [
        f"{identity}/{path.name}"
        for identity, files in class_folders(src / split, skipped)
        for path in files
    ]


def _read_names(path: Path, skipped: list[Skip]) -> dict[str, str]:
    if not path.is_file():
        return {}
    names = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        identity, _, name = line.strip().partition(" ")
        if identity and name:
            names[identity] = name
        elif line.strip():
            skipped.append(Skip(f"{path}:{number}", "names.txt line is not '<id> <Name>'"))
    return names


def _read_identity_meta(path: Path, skipped: list[Skip]) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle, skipinitialspace=True))
    header, identities = [h.strip() for h in rows[0]], {}
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            skipped.append(Skip(f"{path}:{number}", f"expected {len(header)} fields, got {len(row)}"))
            continue
        record = dict(zip(header, (v.strip() for v in row), strict=True))
        identities[record["Class_ID"]] = {"name": record.get("Name", ""), "gender": record.get("Gender", "")}
    return identities


def _read_table(path: Path, skipped: list[Skip]) -> dict[str, list[float]]:
    """NAME_ID -> numbers, from VGGFace2's loose_bb / loose_landmark CSVs."""
    if not path.is_file():
        return {}
    table = {}
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for number, row in enumerate(reader, 2):
            try:
                table[row[0]] = [float(v) for v in row[1:]]
            except (ValueError, IndexError):
                skipped.append(Skip(f"{path}:{number}", "row is not NAME_ID followed by numbers"))
    return table


def _with_attributes(items: list[SourceItem], attributes: Path | None, flagged: list[Skip]):
    """Join a CSV of per-identity attributes (first column: identity; e.g. FEI's gender)."""
    if attributes is None:
        return items
    with open(attributes, newline="") as handle:
        rows = list(csv.reader(handle))
    header = [h.strip() for h in rows[0]]
    table = {row[0].strip(): dict(zip(header[1:], (v.strip() for v in row[1:]), strict=False))
             for row in rows[1:] if row}
    for label in sorted({i.label for i in items} - table.keys()):
        flagged.append(Skip(str(attributes), f"no attributes for identity {label!r}: kept without"))
    return [SourceItem(i.key, i.path, i.label, i.group, i.size, {**i.meta, **table.get(i.label, {})})
            for i in items]

