"""A lean sequential reader of tar members (name, bytes) for the training stream.

The shards are ordinary WebDataset tars; reading them with ``tarfile`` costs about 0.2 ms of
header parsing per sample on the 2-core CPU machine, more than decoding a 160x160 JPEG.  This
reads only what a stream needs from each 512-byte ustar header (name, size, type, checksum)
and understands GNU long names and pax path records, which is everything tar writers emit
for regular files.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

BLOCK = 512


class TarDamaged(Exception):
    """Truncated data or a corrupt header: the rest of the tar cannot be trusted."""


def _octal(field: bytes) -> int:
    digits = field.rstrip(b"\0 ").lstrip(b" ")
    if field[:1] == b"\x80":  # GNU base-256 for large sizes
        return int.from_bytes(field[1:], "big")
    return int(digits, 8) if digits else 0


def _checksum_ok(header: bytes) -> bool:
    stored = _octal(header[148:156])
    return stored == sum(header[:148]) + 8 * 32 + sum(header[156:])


def iter_members(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(name, data) of every regular file, in order; TarDamaged on truncation or corruption."""
    long_name = None
    while True:
        header = stream.read(BLOCK)
        if len(header) < BLOCK:
            raise TarDamaged("unexpected end of data" if header else "missing end-of-archive blocks")
        if header == b"\0" * BLOCK:
            return
        if not _checksum_ok(header):
            raise TarDamaged("bad header checksum")
        size, kind = _octal(header[124:136]), header[156:157]
        data = stream.read(size)
        if len(data) < size:
            raise TarDamaged("unexpected end of data")
        stream.read(-size % BLOCK)
        if kind == b"L":
            long_name = data.rstrip(b"\0").decode()
        elif kind == b"x":
            long_name = _pax_path(data) or long_name
        elif kind in (b"0", b"\0"):
            prefix = header[345:500].rstrip(b"\0")
            name = long_name or ((prefix + b"/" if prefix else b"") + header[:100].rstrip(b"\0")).decode()
            long_name = None
            yield name, data


def _pax_path(data: bytes) -> str | None:
    for record in data.decode("utf-8", "replace").splitlines():
        _, _, entry = record.partition(" ")
        key, _, value = entry.partition("=")
        if key == "path":
            return value
    return None
