"""The lean tar member reader agrees with tarfile, and refuses damaged archives."""

import io
import tarfile

import pytest

from shards.tarstream import TarDamaged, iter_members

MEMBERS = [("a.jpg", b"\xff\xd8jpeg"), ("a.cls", b"3"), ("d" * 150 + ".json", b"{}"), ("empty.txt", b""),
           ("b.png", bytes(range(256)) * 5)]


def archive(fmt: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        directory = tarfile.TarInfo("a_directory")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)  # not a regular file: skipped
        for name, data in MEMBERS:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_members_match_tarfile(fmt):
    if fmt == tarfile.USTAR_FORMAT:  # ustar has no long names without a prefix split
        members = [(n, d) for n, d in MEMBERS if len(n) <= 100]
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        data = buffer.getvalue()
    else:
        members, data = MEMBERS, archive(fmt)
    assert list(iter_members(io.BytesIO(data))) == members


def test_truncation_and_corruption_are_reported():
    data = archive(tarfile.GNU_FORMAT)
    with pytest.raises(TarDamaged, match="unexpected end of data"):
        list(iter_members(io.BytesIO(data[: data.index(bytes(range(256))) + 100])))  # inside b.png
    corrupt = bytearray(data)
    corrupt[512 * 3 + 10] ^= 0xFF  # blocks: directory, a.jpg header, a.jpg data, a.cls header
    with pytest.raises(TarDamaged, match="bad header checksum"):
        list(iter_members(io.BytesIO(bytes(corrupt))))
    with pytest.raises(TarDamaged, match="missing end-of-archive"):
        list(iter_members(io.BytesIO(data[: 512 * 3])))
