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
    with pytest.raises(TarDamaged, match=r"^unexpected end of data$"):
        list(iter_members(io.BytesIO(data[: data.index(bytes(range(256))) + 100])))  # inside b.png
    with pytest.raises(TarDamaged, match=r"^unexpected end of data$"):
        list(iter_members(io.BytesIO(data[: 512 * 3 + 100])))  # inside a.cls' header
    corrupt = bytearray(data)
    corrupt[512 * 3 + 10] ^= 0xFF  # blocks: directory, a.jpg header, a.jpg data, a.cls header
    with pytest.raises(TarDamaged, match=r"^bad header checksum$"):
        list(iter_members(io.BytesIO(bytes(corrupt))))
    with pytest.raises(TarDamaged, match=r"^missing end-of-archive blocks$"):
        list(iter_members(io.BytesIO(data[: 512 * 3])))


def header(name: bytes, size: int = 0, kind: bytes = b"0", prefix: bytes = b"", size_field: bytes | None = None,
           **fields: bytes) -> bytes:
    """A 512-byte ustar header written field by field (POSIX offsets), with a valid checksum."""
    block = bytearray(512)

    def put(offset, value):
        block[offset:offset + len(value)] = value

    put(0, name)
    put(100, b"0000644\0")
    put(108, b"0001750\0")
    put(116, b"0001750\0")
    put(124, size_field if size_field is not None else b"%011o\0" % size)
    put(136, b"14734462536\0")
    put(156, kind)
    put(157, fields.get("linkname", b""))
    put(257, b"ustar\x0000")
    put(265, fields.get("uname", b""))
    put(297, fields.get("gname", b""))
    put(345, prefix)
    put(148, b"        ")  # the checksum is the byte sum with its own field counted as spaces
    put(148, b"%06o\0 " % sum(block))
    return bytes(block)


def member(header_block: bytes, data: bytes = b"") -> bytes:
    return header_block + data + bytes(-len(data) % 512)


def read(*members: bytes) -> list[tuple[str, bytes]]:
    return [(name, bytes(data)) for name, data in iter_members(io.BytesIO(b"".join(members) + bytes(1024)))]


def test_hand_written_headers_prefix_nul_type_and_base_256_size():
    """ustar prefix joined as prefix/name (a one-letter prefix and a full 155-byte one), an old-style NUL
    type flag read as a regular file, a GNU base-256 size field, a blank size field (directory)."""
    long_prefix = b"p" * 155
    payload = bytes(range(256)) * 4 + b"tail"  # 1028 bytes: its size needs more than the first size byte
    assert read(
        member(header(b"dir/", kind=b"5", size_field=bytes(12))),
        member(header(b"a.jpg", 3, prefix=b"x"), b"abc"),
        member(header(b"b.jpg", 2, prefix=long_prefix), b"de"),
        member(header(b"old.txt", 4, kind=b"\0"), b"fghi"),
        member(header(b"big.bin", size_field=b"\x80" + len(payload).to_bytes(11, "big")), payload),
        member(header(b"block.bin", 512), b"j" * 512),
        member(header(b"last.txt", 1), b"k"),
    ) == [("x/a.jpg", b"abc"), (long_prefix.decode() + "/b.jpg", b"de"), ("old.txt", b"fghi"),
          ("big.bin", payload), ("block.bin", b"j" * 512), ("last.txt", b"k")]


def test_a_header_whose_byte_sum_passes_the_adler_modulus_is_still_valid():
    """Byte sums above 65521 (UTF-8 names and owners) are compared modulo 65521 like every other."""
    high = "\uffff".encode() * 33  # 99 bytes of 0xEF/0xBF
    block = header(high, 1, prefix=high, linkname=high, uname=high[:31], gname=high[:31])
    assert sum(block) > 65521
    assert read(member(block, b"z")) == [(high.decode() + "/" + high.decode(), b"z")]


def test_names_lose_their_nul_padding_only():
    long_name = b"l" * 110 + b"_X"
    assert read(
        member(header(b"a_X", 1, prefix=b"dir_X"), b"s"),
        member(header(b"././@LongLink", len(long_name) + 1, kind=b"L"), long_name + b"\0"),
        member(header(long_name[:100], 1), b"t"),
    ) == [("dir_X/a_X", b"s"), (long_name.decode(), b"t")]


def test_pax_path_records_and_gnu_long_names_in_hand_written_headers():
    """A pax path with spaces and '=' inside, after a record that is not UTF-8; a pax header without a
    path leaves an earlier GNU long name in force."""
    path = "some dir/a=b c.jpg"
    records = b"15 comment=\xff\xfe\xfd\n" + b"27 path=" + path.encode() + b"\n"  # "length key=value\n"
    gnu_name = b"g" * 120
    assert read(
        member(header(b"././@PaxHeader", len(records), kind=b"x"), records),
        member(header(b"truncated.jpg", 2), b"pq"),
        member(header(b"././@LongLink", len(gnu_name) + 1, kind=b"L"), gnu_name + b"\0"),
        member(header(b"././@PaxHeader", 12, kind=b"x"), b"12 mtime=12\n"),
        member(header(b"g" * 100, 1), b"r"),
    ) == [(path, b"pq"), (gnu_name.decode(), b"r")]
