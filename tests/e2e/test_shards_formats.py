"""`shards build` on every supported layout, generated in its real on-disk format."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shards.cli import main
from shards.verify import read_samples
from tests.fixtures import datasets


def build(fmt: str, src: Path, out: Path, *options: str) -> dict:
    assert main(["build", fmt, str(src), str(out), *options]) == 0
    assert main(["verify", str(out)]) == 0
    return json.loads((out / "manifest.json").read_text())


def samples(out: Path, manifest: dict) -> list[dict]:
    """Every sample in shard order, with its json decoded."""
    found = []
    for shard in manifest["shards"]:
        content, error = read_samples(out / shard["name"])
        assert error is None
        for key, fields in content.items():
            found.append({"key": key, "shard": shard["name"], **fields, "meta": json.loads(fields["json"])})
    return found


def reasons(manifest: dict) -> dict[str, str]:
    return {Path(s["path"].split(":")[0]).name: s["reason"] for s in manifest["skipped"]}


def test_casia_webface(tmp_path):
    datasets.make_casia(tmp_path / "src")
    out = tmp_path / "out"
    manifest = build("casia-webface", tmp_path / "src", out, "--split", "train=0.5,val=0.5", "--maxcount", "7")
    skipped = reasons(manifest)
    assert skipped["005.jpg"].startswith("cannot decode image")
    assert skipped["thumbs.db"] == "not an image file (extension '.db')"
    assert skipped["0000099"] == "empty folder: no image files"
    assert any(r == "file name is not valid UTF-8" for r in skipped.values())
    assert manifest["flagged"] == [{"path": "0000100", "reason": "identity has a single image: no positive pair"}]
    assert manifest["labels"]["0000001"] == {"id": 0, "count": 4}
    assert sum(v["count"] for v in manifest["labels"].values()) == 30
    rows = samples(out, manifest)
    assert len(rows) == 30 and len({r["key"] for r in rows}) == 30
    assert rows[0]["meta"]["name"] == "Person_1"
    # identities never straddle splits, and are contiguous within each split
    split_of = {}
    for row in rows:
        assert split_of.setdefault(row["meta"]["label"], row["meta"]["split"]) == row["meta"]["split"]
    for split in ("train", "val"):
        order = [r["meta"]["label"] for r in rows if r["meta"]["split"] == split]
        assert order == sorted(order)
    # label ids in cls follow the table; unmodified JPEGs are stored bit for bit
    assert all(int(r["cls"]) == manifest["labels"][r["meta"]["label"]]["id"] for r in rows)
    original = (tmp_path / "src" / rows[0]["meta"]["source"]).read_bytes()
    assert rows[0]["jpg"] == original


def test_vggface2_crops_the_clamped_loose_box(tmp_path):
    datasets.make_vggface2(tmp_path / "src")
    manifest = build("vggface2", tmp_path / "src", tmp_path / "out")
    assert {k: v["samples"] for k, v in manifest["splits"].items()} == {"train": 9, "test": 3}
    assert reasons(manifest)["0099_01.jpg"] == "listed in meta/train_list.txt but missing"
    rows = {r["meta"]["source"]: r for r in samples(tmp_path / "out", manifest)}
    first = rows["train/n000001/0001_01.jpg"]
    assert first["meta"]["face_box"] == [-5, 8, 50, 60]
    assert first["meta"]["name"] == "Name_1" and first["meta"]["gender"] == "m"
    assert Image.open(io.BytesIO(first["jpg"])).size == (45, 60)  # x clamped from -5 to 0
    assert Image.open(io.BytesIO(rows["train/n000001/0002_01.jpg"]["jpg"])).size == (50, 60)
    assert rows["test/n000004/0001_01.jpg"]["meta"]["official_split"] == "test"


def test_imagefolder_orl_pgm_is_written_losslessly(tmp_path):
    datasets.make_orl(tmp_path / "src")
    manifest = build("imagefolder", tmp_path / "src", tmp_path / "out")
    rows = samples(tmp_path / "out", manifest)
    assert len(rows) == 12 and set(manifest["labels"]) == {"s1", "s2", "s3"}
    row = rows[0]
    source = np.asarray(Image.open(tmp_path / "src" / row["meta"]["source"]))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(row["png"]))), source)  # greyscale stays greyscale
    every = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "src").rglob("*.pgm"))])
    assert manifest["splits"]["train"]["pixels"] == [
        {"bit_depth": 8, "channels": 1, "samples": 12, "min": int(every.min()), "max": int(every.max())}]


def test_imagefolder_fei_flat_layout_with_attributes(tmp_path):
    csv = datasets.make_fei(tmp_path / "src")
    manifest = build("imagefolder", tmp_path / "src", tmp_path / "out", "--attributes", str(csv))
    assert set(manifest["labels"]) == {"1", "2", "3"}
    genders = {r["meta"]["label"]: r["meta"].get("gender") for r in samples(tmp_path / "out", manifest)}
    assert genders == {"1": "m", "2": "f", "3": None}
    assert manifest["flagged"] == [{"path": str(csv), "reason": "no attributes for identity '3': kept without"}]


def test_lfw_pairs_keep_order_and_folds(tmp_path):
    lines = datasets.make_lfw(tmp_path / "src")
    manifest = build("lfw-pairs", tmp_path / "src", tmp_path / "out")
    pairs = manifest["pairs"]
    assert [p["line"] for p in pairs] == [2, 3, 4, 5, 6, 8, 9]  # line 7 names a missing image
    assert [p["fold"] for p in pairs] == [0, 0, 0, 0, 1, 1, 1]
    assert [p["same"] for p in pairs] == [True, True, False, False, True, False, False]
    assert lines[6] == "Dee_D\t2\t9"
    assert reasons(manifest)["pairs.txt"] == "pair (fold 2) names missing image(s): Dee_D/Dee_D_0009.*"
    keys = {r["key"] for r in samples(tmp_path / "out", manifest)}
    assert all(p["a"] in keys and p["b"] in keys for p in pairs)


def test_lfw_pairs_in_png_and_an_image_saved_twice(tmp_path):
    datasets.make_lfw(tmp_path / "src", suffix=".png")
    manifest = build("lfw-pairs", tmp_path / "src", tmp_path / "out")
    assert [p["line"] for p in manifest["pairs"]] == [2, 3, 4, 5, 6, 8, 9]  # as the JPEG set
    assert all("png" in s and "jpg" not in s for s in samples(tmp_path / "out", manifest))  # stored bit for bit
    Image.open(tmp_path / "src" / "lfw" / "Ann_A" / "Ann_A_0001.png").save(
        tmp_path / "src" / "lfw" / "Ann_A" / "Ann_A_0001.JPG")
    manifest = build("lfw-pairs", tmp_path / "src", tmp_path / "again")
    assert [p["line"] for p in manifest["pairs"]] == [3, 5, 6, 8, 9]  # lines 2 and 4 name Ann_A 1
    skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert skipped[f"{tmp_path / 'src' / 'pairs.txt'}:2"] == ("pair (fold 1) names an image saved in several "
                                                            "formats: Ann_A/Ann_A_0001.JPG, Ann_A/Ann_A_0001.png")


def test_lfw_broken_pairs_file_is_a_clear_error(tmp_path, capsys):
    datasets.make_lfw(tmp_path / "src")
    pairs = tmp_path / "src" / "pairs.txt"
    pairs.write_text(pairs.read_text().replace("Bob_B\t1\t3", "Bob_B\t1"))
    assert main(["build", "lfw-pairs", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    assert f"{pairs}:3: expected a matched 'Name i j' line" in capsys.readouterr().err


def test_figshare_tumor_16bit_lossless_patient_split(tmp_path):
    fixture = datasets.make_figshare(tmp_path / "src")
    manifest = build("figshare-tumor", tmp_path / "src", tmp_path / "out", "--split", "train=0.5,test=0.5")
    skipped = reasons(manifest)
    assert skipped["9.mat"] == "cjdata lacks field(s) PID, image, tumorBorder, tumorMask"
    assert skipped["10.mat"] == "not a MATLAB v7.3 (HDF5) file"
    assert list(manifest["labels"]) == ["meningioma", "glioma", "pituitary"]  # official order 1, 2, 3
    rows = samples(tmp_path / "out", manifest)
    assert len(rows) == 8
    patient_splits: dict[str, set] = {}
    for row in rows:
        patient_splits.setdefault(row["meta"]["patient"], set()).add(row["meta"]["split"])
        index = int(row["meta"]["source"].rsplit("/", 1)[1].split(".")[0])
        pixels = np.asarray(Image.open(io.BytesIO(row["png"])))
        assert pixels.dtype == np.uint16 and np.array_equal(pixels, fixture["images"][index])
        mask = np.asarray(Image.open(io.BytesIO(row["mask.png"])))
        assert mask.shape == (64, 48) and mask[25, 15] == 255 and mask[0, 0] == 0
        assert row["meta"]["fold"] == (index + 1) // 2
        assert row["meta"]["label"] == ["meningioma", "glioma", "pituitary"][index % 3]
    assert all(len(s) == 1 for s in patient_splits.values())  # no patient in two splits
    assert len(patient_splits) == 4


def test_idc_dedupes_the_archive_copy_and_pads_edges(tmp_path):
    datasets.make_idc(tmp_path / "src")
    manifest = build("idc", tmp_path / "src", tmp_path / "out", "--split", "train=0.67,test=0.33")
    assert manifest["duplicate_copies_ignored"] == 3
    assert reasons(manifest)["8863_idx5_x9_y9_class1.png"] == "name says patient 8863 class 1, folder says 8863/0"
    rows = samples(tmp_path / "out", manifest)
    assert len(rows) == 19
    edge = next(r for r in rows if r["meta"]["x"] == 2001)
    assert edge["meta"]["padded_from"] == [40, 30]
    assert Image.open(io.BytesIO(edge["png"])).size == (50, 50)
    splits_of_patient: dict[str, set] = {}
    for row in rows:
        splits_of_patient.setdefault(row["meta"]["patient"], set()).add(row["meta"]["split"])
    assert all(len(s) == 1 for s in splits_of_patient.values())
    assert manifest["labels"] == {"idc_negative": {"id": 0, "count": 9}, "idc_positive": {"id": 1, "count": 10}}


@pytest.mark.parametrize("fmt, make, box_field, box", [
    ("cub200-2010", datasets.make_cub2010, "bbox", [2.0, 3.0, 28.0, 32.0]),
    ("cub200-2011", datasets.make_cub2011, "bbox", [1.0, 2.0, 30.0, 31.5]),
    ("stanford-dogs", datasets.make_stanford_dogs, "bboxes", [[1.0, 2.0, 30.0, 38.0]]),
])
def test_fine_grained_official_splits_and_boxes(tmp_path, fmt, make, box_field, box):
    make(tmp_path / "src")
    manifest = build(fmt, tmp_path / "src", tmp_path / "out")
    assert {k: v["samples"] for k, v in manifest["splits"].items()} == {"train": 4, "test": 2}
    rows = samples(tmp_path / "out", manifest)
    assert rows[0]["meta"][box_field] == box
    assert len(manifest["labels"]) == 2


def test_stanford_dogs_wrong_mat_fields_name_file_and_field(tmp_path, capsys):
    datasets.make_stanford_dogs(tmp_path / "src", bad_lists=True)
    assert main(["build", "stanford-dogs", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "train_list.mat: missing variable(s) labels (has: file_list, label)" in err
