"""`shards build mxnet-rec` on RecordIO sets written byte by byte (tests/fixtures/recordio.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shards.cli import main
from shards.recordio import parts, read_header, read_record
from shards.verify import read_samples
from tests.fixtures import recordio


def build(src: Path, out: Path, *options: str) -> dict:
    assert main(["build", "mxnet-rec", str(src), str(out), *options]) == 0
    assert main(["verify", str(out)]) == 0
    return json.loads((out / "manifest.json").read_text())


def samples(out: Path, manifest: dict) -> list[dict]:
    found = []
    for shard in manifest["shards"]:
        content, error = read_samples(out / shard["name"])
        assert error is None
        found += [{**fields, "meta": json.loads(fields["json"])} for fields in content.values()]
    return found


def skipped_by_record(manifest: dict) -> dict[str, str]:
    return {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in manifest["skipped"]}


@pytest.mark.parametrize("payload", [
    b"", b"abc", bytes(range(40)),
    recordio.MAGIC,  # the whole payload: an empty first and last part
    b"abcd" + recordio.MAGIC + recordio.MAGIC + b"efg",  # adjacent: an empty middle part
    b"ab" + recordio.MAGIC + b"cd",  # not 4-byte aligned: not split
    b"abcd" + recordio.MAGIC,  # at the very end: an empty last part
])
def test_parts_are_joined_as_written(tmp_path, payload):
    path = tmp_path / "one.rec"
    path.write_bytes(b"pad!" + recordio.frame(payload) + recordio.frame(b"next"))
    with open(path, "rb") as handle:
        assert read_record(handle, 4, path.stat().st_size) == payload


def test_header_split_by_the_magic(tmp_path):
    """A record id whose low bytes are the magic splits the image header itself."""
    path = tmp_path / "one.rec"
    path.write_bytes(recordio.frame(recordio.pack([7.0, 2.5], b"image", record_id=0xCED7230A)))
    with open(path, "rb") as handle:
        found = parts(handle, 0, path.stat().st_size)
        header = read_header(handle, found)
    assert len(found) == 2 and header.labels == (7.0, 2.5) and header.id == 0xCED7230A


def test_insightface_set(tmp_path):
    made = recordio.make_insightface_rec(tmp_path / "src")
    rec = (tmp_path / "src" / "train.rec").read_bytes()
    # the fixture's multi-part record: first part up to payload byte 32, an empty middle part, ...
    for part in (recordio.lrecord(1, 32), recordio.lrecord(2, 0), recordio.lrecord(2, 4)):
        assert rec.count(recordio.MAGIC + part) == 1
    out = tmp_path / "out"
    manifest = build(tmp_path / "src", out, "--maxcount", "5")
    rows = samples(out, manifest)
    # only the images: not the header record, not the identity records, not the bad records
    assert {r["meta"]["record"] for r in rows} == set(made["images"])
    for row in rows:  # bit for bit, with the identity of the record's (first) label
        identity, data = made["images"][row["meta"]["record"]]
        assert row["jpg"] == data
        assert row["meta"]["label"] == f"{identity:07d}" and int(row["cls"]) == identity
    assert made["multipart"] in {r["meta"]["record"] for r in rows}
    assert next(r for r in rows if r["meta"]["record"] == made["flag2"])["meta"]["label"] == "0000001"
    assert [r["meta"]["label"] for r in rows] == sorted(r["meta"]["label"] for r in rows)  # contiguous
    assert rows[0]["meta"]["source"] == "train.rec#1" and rows[0]["meta"]["key"] == "0000000_00000001"
    skipped = skipped_by_record(manifest)
    bad_magic, undecodable = sorted(made["bad"])
    assert skipped[f"train.rec#{bad_magic}"].startswith("bad magic 0x00000000 at byte ")
    assert skipped[f"train.rec#{undecodable}"].startswith("cannot decode image")
    assert skipped[f"train.rec#{made['missing']}"].endswith("is not in train.idx")
    assert [r for p, r in skipped.items() if p.startswith("train.idx:")] == [
        "train.idx line is not '<key>\\t<offset>'"]
    assert len(manifest["skipped"]) == 4
    assert manifest["recordio"] == {"header_record": made["header"], "images_listed": made["missing"],
                                    "property": {"num_classes": 3, "image_size": [32, 32]}}
    assert manifest["flagged"] == []


def test_limit_takes_the_first_images(tmp_path):
    made = recordio.make_insightface_rec(tmp_path / "src")
    manifest = build(tmp_path / "src", tmp_path / "out", "--limit", "5")
    rows = samples(tmp_path / "out", manifest)
    assert sorted(r["meta"]["record"] for r in rows) == sorted(made["images"])[:5]


def test_plain_rec_without_header_and_a_truncated_file(tmp_path):
    images = recordio.make_plain_rec(tmp_path / "src")
    (tmp_path / "src" / "property").write_text("3,32,32")
    manifest = build(tmp_path / "src", tmp_path / "out")
    assert {"path": str(tmp_path / "src" / "property"),
            "reason": "says 3 classes; the records hold 2 identities"} in manifest["flagged"]
    rows = samples(tmp_path / "out", manifest)
    assert {r["meta"]["record"]: r["jpg"] for r in rows} == {k: v[1] for k, v in images.items() if k < 3}
    assert skipped_by_record(manifest)["train.rec#3"].startswith("truncated: a ")
    assert manifest["recordio"]["header_record"] is None


def test_interrupted_build_resumes(tmp_path):
    recordio.make_insightface_rec(tmp_path / "src")
    args = ["build", "mxnet-rec", str(tmp_path / "src"), str(tmp_path / "out"), "--maxcount", "4"]
    assert main(args) == 0
    out = tmp_path / "out"
    first = json.loads((out / "manifest.json").read_text())
    # What a kill mid-build leaves: a half-written shard, no record for it, no manifest.
    (out / "manifest.json").unlink()
    (out / ".build" / "train-000001.tar.json").unlink()
    (out / "train-000001.tar").rename(out / "train-000001.tar.partial")
    assert main(args) == 0
    second = json.loads((out / "manifest.json").read_text())
    assert second["shards_reused"] == len(first["shards"]) - 1
    assert second["shards"] == first["shards"]
    assert not list(out.glob("*.partial"))


def test_unreadable_header_record_is_an_error(tmp_path, capsys):
    recordio.write_rec(tmp_path / "src", {0: b"short"})
    assert main(["build", "mxnet-rec", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    assert "record 0 (the header record): record of 5 bytes is shorter" in capsys.readouterr().err
