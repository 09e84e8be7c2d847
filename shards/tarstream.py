"""A lean sequential reader of tar members (name, data) for the training stream.

The shards are ordinary WebDataset tars; reading them with ``tarfile`` costs about 0.2 ms of
header parsing per sample on the 2-core CPU machine, more than decoding a 160x160 JPEG.  This
reads only what a stream needs from each 512-byte ustar header (name, size, type, checksum)
and understands GNU long names and pax path records, which is everything tar writers emit
for regular files.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import BinaryIO

BLOCK = 512
_END_OF_ARCHIVE = bytes(BLOCK)
_ADLER = 65521


class TarDamaged(Exception):
    """Truncated data or a corrupt header: the rest of the tar cannot be trusted."""


def _octal(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for large sizes
        return int.from_bytes(field[1:], "big")
    digits = field.strip(b"\0 ")
    return int(digits, 8) if digits else 0


def _checksum_ok(header: bytes) -> bool:
    """The header's byte sum (its checksum field counted as spaces) against the stored one,
    modulo 65521: adler32's first half is that sum, in C (Python's sum() over 512 bytes costs
    3 us, nine per sample).  A corrupt header passes with probability 1/65521."""
    field = header[148:156]
    expected = (zlib.adler32(header) & 0xFFFF) - 1 - sum(field) + 8 * 32
    return (_octal(field) - expected) % _ADLER == 0


def iter_members(stream: BinaryIO) -> Iterator[tuple[str, bytearray]]:
    """(name, data) of every regular file, in order; TarDamaged on truncation or corruption.
    The data is a bytearray: a decoder can wrap it as a tensor without copying it."""
    long_name = None
    read, readinto = stream.read, stream.readinto
    while True:
        header = read(BLOCK)
        if len(header) < BLOCK:
            raise TarDamaged("unexpected end of data" if header else "missing end-of-archive blocks")
        if header == _END_OF_ARCHIVE:
            return
        if not _checksum_ok(header):
            raise TarDamaged("bad header checksum")
        size, kind = _octal(header[124:136]), header[156]
        data = bytearray(size)
        if readinto(data) < size:
            raise TarDamaged("unexpected end of data")
        if size % BLOCK:
            read(BLOCK - size % BLOCK)
        if kind == 76:  # L: GNU long name of the next member
            long_name = data.rstrip(b"\0").decode()
        elif kind == 120:  # x: pax header of the next member
            long_name = _pax_path(data) or long_name
        elif kind in (48, 0):  # 0 or NUL: regular file
            if long_name is None:
                name = header[:100].rstrip(b"\0")
                if header[345]:  # ustar prefix
                    name = header[345:500].rstrip(b"\0") + b"/" + name
                yield name.decode(), data
            else:
                yield long_name, data
                long_name = None


def _pax_path(data: bytes) -> str | None:
    for record in data.decode("utf-8", "replace").splitlines():
        _, _, entry = record.partition(" ")
        key, _, value = entry.partition("=")
        if key == "path":
            return value
    return None
