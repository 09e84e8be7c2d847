"""MXNet RecordIO, read without MXNet (REFERENCE.md §11.3; dmlc-core ``src/recordio.cc``,
``mxnet/recordio.py``).

A record on disk is one or more parts, each: uint32 magic 0xced7230a, uint32 ``lrecord`` (upper 3
bits the part flag: 0 whole record, 1 first, 2 middle, 3 last part; lower 29 bits the length),
the bytes, zero padding to 4 bytes.  The writer splits a record wherever the magic occurs at a
4-byte-aligned position of it and drops those 4 bytes, so the reader puts the magic back between
consecutive parts.  ``train.idx`` lists ``key<TAB>offset`` per line.  A payload starts with the
``IfQQ`` image header (flag, label, id, id2); when flag > 0, flag float32 labels follow it.
All integers are little-endian (the files are written in x86 byte order).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shards.items import Skip

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
WHOLE, FIRST, MIDDLE, LAST = range(4)
LENGTH_BITS = 29
IMAGE_HEADER = struct.Struct("<IfQQ")


class RecordError(ValueError):
    """A record that cannot be read; the message is the reason recorded in the manifest."""


@dataclass(frozen=True)
class ImageHeader:
    flag: int
    labels: tuple[float, ...]
    """The header's label when flag is 0, else the flag float32 values that follow it."""
    id: int
    id2: int


def read_index(path: Path, skipped: list[Skip]) -> dict[int, int]:
    """key -> byte offset, in file order; lines that are not ``key<TAB>offset`` are skipped."""
    index = {}
    with open(path, errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.strip().split("\t")
            if not line.strip():
                continue
            try:
                key, offset = int(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                skipped.append(Skip(f"{path}:{number}", "train.idx line is not '<key>\\t<offset>'"))
                continue
            index[key] = offset  # a repeated key: the last line wins, as in MXNet
    return index


def parts(handle: BinaryIO, offset: int, file_size: int) -> list[tuple[int, int]]:
    """(data offset, length) of each part of the record at ``offset``, its framing checked
    (magic, part order, every part inside the file) without reading the data."""
    found: list[tuple[int, int]] = []
    position = offset
    while True:
        handle.seek(position)
        frame = handle.read(8)
        if len(frame) < 8:
            raise RecordError(f"truncated: file ends inside the record header at byte {position}")
        magic, lrecord = struct.unpack("<II", frame)
        if magic != MAGIC:
            raise RecordError(f"bad magic 0x{magic:08x} at byte {position} (not the start of a record)")
        flag, length = lrecord >> LENGTH_BITS, lrecord & ((1 << LENGTH_BITS) - 1)
        expected = (WHOLE, FIRST) if not found else (MIDDLE, LAST)
        if flag not in expected:
            raise RecordError(f"part flag {flag} at byte {position}, expected {' or '.join(map(str, expected))}")
        if position + 8 + length > file_size:
            raise RecordError(f"truncated: a {length}-byte part at byte {position} runs past the end of the file")
        found.append((position + 8, length))
        if flag in (WHOLE, LAST):
            return found
        position += 8 + (length + 3) // 4 * 4


def record_size(found: list[tuple[int, int]]) -> int:
    """Bytes of the joined record whose parts are ``found``."""
    return sum(length for _, length in found) + len(MAGIC_BYTES) * (len(found) - 1)


def read_parts(handle: BinaryIO, found: list[tuple[int, int]], limit: int | None = None) -> bytes:
    """The record whose parts are ``found``, joined with the magic between them (as dmlc's reader
    does); with ``limit``, only as many parts as its first ``limit`` bytes need."""
    data = bytearray()
    for number, (start, length) in enumerate(found):
        if number:
            data += MAGIC_BYTES
        wanted = length if limit is None else max(0, min(length, limit - len(data)))
        handle.seek(start)
        chunk = handle.read(wanted)
        if len(chunk) < wanted:
            raise RecordError(f"truncated: the file ends inside the part at byte {start - 8}")
        data += chunk
        if limit is not None and len(data) >= limit:
            break
    return bytes(data)


def read_record(handle: BinaryIO, offset: int, file_size: int) -> bytes:
    return read_parts(handle, parts(handle, offset, file_size))


def unpack(record: bytes) -> tuple[ImageHeader, bytes]:
    """The image header and what follows its labels (the encoded image)."""
    if len(record) < IMAGE_HEADER.size:
        raise RecordError(f"record of {len(record)} bytes is shorter than the {IMAGE_HEADER.size}-byte image header")
    flag, label, id_, id2 = IMAGE_HEADER.unpack_from(record)
    end = IMAGE_HEADER.size + 4 * flag
    if flag == 0:
        return ImageHeader(0, (label,), id_, id2), record[end:]
    if len(record) < end:
        raise RecordError(f"header says {flag} labels, the record ends after {(len(record) - IMAGE_HEADER.size) // 4}")
    labels = struct.unpack_from(f"<{flag}f", record, IMAGE_HEADER.size)
    return ImageHeader(flag, labels, id_, id2), record[end:]


def read_header(handle: BinaryIO, found: list[tuple[int, int]]) -> ImageHeader:
    """The image header of the record whose parts are ``found``, reading little more than it."""
    head = read_parts(handle, found, limit=IMAGE_HEADER.size)
    flag = IMAGE_HEADER.unpack_from(head)[0] if len(head) >= IMAGE_HEADER.size else 0
    if flag and len(head) < IMAGE_HEADER.size + 4 * flag:
        head = read_parts(handle, found, limit=IMAGE_HEADER.size + 4 * flag)
    return unpack(head)[0]


def identity(header: ImageHeader) -> int:
    """The class of an image record: its label, or its first label (insightface's MXFaceDataset)."""
    label = header.labels[0]
    if not math.isfinite(label) or label < 0 or label != int(label):
        raise RecordError(f"label {label} is not a non-negative whole number")
    return int(label)
