"""MXNet RecordIO face sets as insightface packs them (MS1MV2/MS1MV3 ``faces_emore``, Glint360K,
``faces_webface_112x112``; REFERENCE.md §11.3), read without MXNet (framing in shards/recordio.py).

SRC/train.rec, SRC/train.idx, optional SRC/property (``num_classes,h,w``).  Read as
arcface_torch's ``MXFaceDataset`` reads them: when record 0 has labels (flag > 0) it is the
set's header record, labels (a, b): records 1..a-1 are the images, records a..b-1 the identity
records (the image range of each identity: not images, not read); without one, every key of
train.idx is an image.  An image's identity is its label (the first one when it has several);
the encoded image after its header is stored bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from shards.imaging import SampleError
from shards.items import ScanResult, Skip, SourceItem, make_key
from shards.options import BuildOptions
from shards.recordio import RecordError, identity, parts, read_header, read_index, read_record, record_size, unpack
from shards.render import render_bytes

REC, IDX, PROPERTY = "train.rec", "train.idx", "property"
IDENTITY_DIGITS = 7
"""Identities are named by their number, zero-padded so that names sort as numbers: the label
table then gives each identity its own number as id when every one is present."""
SIGNATURES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png"}


def scan_mxnet_rec(src: Path, options: BuildOptions) -> ScanResult:
    skipped: list[Skip] = []
    index = read_index(src / IDX, skipped)
    rec = src / REC
    file_size = rec.stat().st_size
    items = []
    with open(rec, "rb") as handle:
        keys, header_record = image_keys(handle, index, file_size)
        for key in keys:
            if options.limit is not None and len(items) >= options.limit:
                break  # --limit: the first N images, without reading the other millions
            if key not in index:
                skipped.append(Skip(f"{rec}#{key}", f"image record {key} (in the header record's range) "
                                                    "is not in train.idx"))
                continue
            try:
                found = parts(handle, index[key], file_size)
                name = f"{identity(read_header(handle, found)):0{IDENTITY_DIGITS}d}"
            except RecordError as exc:
                skipped.append(Skip(f"{rec}#{key}", str(exc)))
                continue
            items.append(SourceItem(make_key(f"{name}/{key:08d}"), f"{rec}#{key}", name, name, record_size(found),
                                    {"source": f"{REC}#{key}", "record": key, "offset": index[key]}))
    flagged: list[Skip] = []
    summary: dict[str, Any] = {"header_record": header_record, "images_listed": len(keys),
                               "property": read_property(src / PROPERTY, skipped)}
    num_classes = (summary["property"] or {}).get("num_classes")
    found_classes = len({i.label for i in items})
    if num_classes is not None and options.limit is None and num_classes != found_classes:
        flagged.append(Skip(str(src / PROPERTY), f"says {num_classes} classes; the records hold {found_classes} "
                                                 "identities"))
    return ScanResult(items, skipped, flagged, extra={"recordio": summary})


def image_keys(handle: BinaryIO, index: dict[int, int], file_size: int) -> tuple[Sequence[int], list[int] | None]:
    """The keys of the image records, and the header record's (a, b) if the set has one."""
    if not index:
        raise ValueError(f"{IDX} lists no records")
    if 0 not in index:
        return list(index), None
    try:
        header = read_header(handle, parts(handle, index[0], file_size))
    except RecordError as exc:
        raise ValueError(f"record 0 (the header record): {exc}") from None
    if header.flag == 0:
        return list(index), None
    bounds = [int(v) for v in header.labels[:2]]
    if any(v != label for v, label in zip(bounds, header.labels, strict=False)) or bounds[0] < 1:
        raise ValueError(f"record 0 has labels {list(header.labels)}, not an insightface header record's "
                         "(first identity record, end of identity records)")
    return range(1, bounds[0]), bounds


def read_property(path: Path, skipped: list[Skip]) -> dict[str, Any] | None:
    """insightface's ``property`` file: ``num_classes,height,width``."""
    if not path.is_file():
        return None
    try:
        num_classes, height, width = (int(v) for v in path.read_text().strip().split(","))
    except ValueError:
        skipped.append(Skip(str(path), "property is not 'num_classes,height,width'"))
        return None
    return {"num_classes": num_classes, "image_size": [height, width]}


def record_image(item: SourceItem, options: BuildOptions) -> bytes:
    """The image bytes of the item's record (after the IfQQ header)."""
    rec = options.src / REC
    try:
        with open(rec, "rb") as handle:
            _, image = unpack(read_record(handle, item.meta["offset"], rec.stat().st_size))
    except RecordError as exc:
        raise SampleError(str(exc)) from None
    except OSError as exc:
        raise SampleError(f"cannot read {REC}: {exc.strerror}") from None
    return image


def render_record(item: SourceItem, options: BuildOptions, aligner) -> tuple[dict[str, bytes], dict]:
    image = record_image(item, options)
    suffix = next((s for signature, s in SIGNATURES.items() if image.startswith(signature)), "")
    return render_bytes(image, suffix, item, options, aligner)
