"""Turning one source image into the bytes of a sample: crop, align or resize, encode, and
describe (bit depth, channels, intensity range, flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shards.align import FaceAligner
from shards.imaging import (
    SIXTEEN_BIT,
    SampleError,
    centre_square,
    crop_box,
    decode,
    describe,
    encode,
    lossless_extension,
    resize_shorter,
)
from shards.items import SourceItem
from shards.options import BuildOptions

Fields = dict[str, bytes]


def read_source(item: SourceItem) -> bytes:
    try:
        return Path(item.path).read_bytes()
    except OSError as exc:
        raise SampleError(f"cannot read file: {exc.strerror}") from None


def source_file(item: SourceItem, options: BuildOptions) -> bytes:
    """``Format.source_bytes`` of an item that is a file of its own."""
    return read_source(item)


def render_image(item: SourceItem, options: BuildOptions,
                 aligner: FaceAligner | None) -> tuple[Fields, dict[str, Any]]:
    """The image field and json additions for one item. Raises SampleError with the reason."""
    return render_bytes(read_source(item), Path(item.path).suffix, item, options, aligner)


def render_bytes(data: bytes, suffix: str, item: SourceItem, options: BuildOptions,
                 aligner: FaceAligner | None) -> tuple[Fields, dict[str, Any]]:
    """``render_image`` of an image held in ``data`` (a record of an archive, not a file of its
    own); ``suffix`` names its encoding ('.jpg', '.png')."""
    image = decode(data)
    extension = lossless_extension(suffix)
    meta: dict[str, Any] = {"source_size": list(image.size), **describe(image, options.min_size)}
    changed = False
    if "face_box" in item.meta:  # VGGFace2: crop to the loose box before anything else
        image, changed = crop_box(image, item.meta["face_box"]), True
    if aligner is not None:
        if image.mode == SIXTEEN_BIT:
            raise SampleError("16-bit image: MTCNN alignment needs 8-bit faces")
        aligned = aligner.align(image.convert("RGB"))
        if aligned is not None:
            image, landmarks = aligned
            meta.update(aligned=True, landmarks=landmarks.round(2).tolist())
        elif options.unaligned == "skip":
            raise SampleError("no face found by MTCNN")
        else:
            image = centre_square(image.convert("RGB"), aligner.size)
            meta["aligned"] = False
        changed = True
    elif options.size and min(image.size) != options.size:
        image, changed = resize_shorter(image, options.size), True
    meta["stored_size"] = list(image.size)  # the canvas a face task's crops are cut from (shards/geometry.py)
    if not changed and suffix.lower() in (".jpg", ".jpeg", ".png"):
        return {extension: data}, meta  # the original bytes, bit for bit
    return {extension: encode(image, extension, options.quality)}, meta
