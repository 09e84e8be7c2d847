"""`shards build insightface-bin FILE.bin OUT`: insightface's evaluation pickles as lfw-pairs shards."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facetrain.face_task import lfw_pairs
from shards.cli import main
from shards.eval_reader import eval_loader
from shards.stream_config import AugmentConfig
from tests.fixtures.insightface import PNG_IMAGE, make_bin
from tests.fixtures.shard_folders import build_and_verify, stored

TRUNCATED = b"\xff\xd8\xff\xe0 truncated jpeg"
NOT_A_BIN = "not an insightface .bin (a pickle of (bins, issame_list))"


def build(src: Path, out: Path, *options: str) -> dict:
    return build_and_verify("insightface-bin", src, out, *options)


@pytest.mark.parametrize("py2", [False, True], ids=["python3", "python2"])
def test_images_bit_for_bit_and_pairs_in_insightface_folds(tmp_path, py2):
    fixture = make_bin(tmp_path / "cfp_fp.bin", py2=py2)
    manifest = build(tmp_path / "cfp_fp.bin", tmp_path / "out")
    samples = stored(tmp_path / "out", manifest)
    assert len(samples) == 40 and set(manifest["splits"]) == {"test"}
    for key, sample in samples.items():
        index = sample["meta"]["bin_index"]
        assert key == f"cfp_fp_{index // 2:02d}_{index % 2}"
        assert sample["png" if index == PNG_IMAGE else "jpg"] == fixture["bins"][index]
        assert sample["meta"]["group"] == f"cfp_fp_{index // 2:02d}"
    assert [p["index"] for p in manifest["pairs"]] == list(range(20))
    assert [p["same"] for p in manifest["pairs"]] == fixture["issame"]
    assert [p["fold"] for p in manifest["pairs"]] == [i // 2 for i in range(20)]  # 10 blocks of n/10
    assert [(p["a"], p["b"]) for p in manifest["pairs"]] == [(f"cfp_fp_{i:02d}_0", f"cfp_fp_{i:02d}_1")
                                                             for i in range(20)]
    assert manifest["labels"] == {"unknown": {"id": 0, "count": 40}}
    assert (manifest["pairs_in_file"], manifest["pairs_dropped"], manifest["skipped"]) == (20, 0, [])
    assert manifest["split_method"]["group"] == "group" and manifest["splits"]["test"]["groups"] == 20


def test_the_face_task_reads_the_pairs_through_the_eval_reader(tmp_path):
    fixture = make_bin(tmp_path / "lfw.bin")
    build(tmp_path / "lfw.bin", tmp_path / "out", "--maxcount", "15")  # 3 shards: rows come out of order
    augment = AugmentConfig(size=32, crop="center", hflip=False)
    keys, images = [], []
    for batch in eval_loader(str(tmp_path / "out"), "test", 0, 1, 8, augment):
        keys += batch["key"]
        images += list(batch["image"].numpy())
    a, b, same, folds = lfw_pairs(str(tmp_path / "out"), keys)
    assert [keys[i] for i in a] == [f"lfw_{i:02d}_0" for i in range(20)]
    assert [keys[i] for i in b] == [f"lfw_{i:02d}_1" for i in range(20)]
    assert same.tolist() == fixture["issame"] and folds.tolist() == [i // 2 for i in range(20)]
    for pair in (0, 3, 19):  # the rows hold the images of the .bin's pair (bins[7] is the PNG)
        for position, row in ((0, a[pair]), (1, b[pair])):
            source = Image.open(io.BytesIO(fixture["bins"][2 * pair + position])).convert("RGB")
            assert np.array_equal(images[row].transpose(1, 2, 0), np.asarray(source))


def test_an_undecodable_image_drops_its_pair_and_says_why(tmp_path):
    make_bin(tmp_path / "agedb_30.bin", replace={9: TRUNCATED, 12: "a str, not image bytes"})
    manifest = build(tmp_path / "agedb_30.bin", tmp_path / "out")
    src = tmp_path / "agedb_30.bin"
    skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert skipped.pop(f"{src}:bins[9]").startswith("cannot decode image: ")
    assert skipped == {
        f"{src}:bins[8]": "pair 4 (fold 3) dropped: its other image bins[9] does not decode",
        f"{src}:bins[12]": "not encoded image bytes (str)",
        f"{src}:bins[13]": "pair 6 (fold 4) dropped: its other image bins[12] does not decode",
    }
    assert [p["index"] for p in manifest["pairs"]] == [i for i in range(20) if i not in (4, 6)]
    assert (manifest["pairs_in_file"], manifest["pairs_dropped"]) == (20, 2)
    assert manifest["splits"]["test"]["samples"] == 36 and manifest["flagged"] == []


def test_limit_keeps_whole_pairs_in_file_order(tmp_path):
    make_bin(tmp_path / "calfw.bin")
    manifest = build(tmp_path / "calfw.bin", tmp_path / "out", "--limit", "5")
    assert sorted(stored(tmp_path / "out", manifest)) == ["calfw_00_0", "calfw_00_1", "calfw_01_0", "calfw_01_1"]
    assert [p["index"] for p in manifest["pairs"]] == [0, 1]


class Shell:
    def __reduce__(self):
        return os.system, ("echo unpickled",)


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xd8\xff\xe0 a JPEG", f"{NOT_A_BIN}: invalid load key"),
    (pickle.dumps(([b"x"] * 39, [True] * 20), protocol=2), "39 images for 20 pairs: a .bin holds two per pair"),
    (pickle.dumps({"bins": []}, protocol=2), "holds a dict, not the pair (bins, issame_list)"),
    (pickle.dumps(([b"x"] * 20, ["yes"] * 10), protocol=2), "issame_list[0] is 'yes', not a boolean"),
    (pickle.dumps(([b"x"] * 8, [True] * 4), protocol=2), "4 pairs: insightface's 10 folds need at least 10"),
    (pickle.dumps(([Shell()] * 20, [True] * 10), protocol=2), f"{NOT_A_BIN}: refers to posix.system"),
])
def test_what_is_no_bin_is_a_one_line_error_naming_the_file(tmp_path, capsys, content, message):
    (tmp_path / "lfw.bin").write_bytes(content)
    assert main(["build", "insightface-bin", str(tmp_path / "lfw.bin"), str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {tmp_path / 'lfw.bin'}: cannot read as insightface-bin: {message}")
    assert captured.err.count("\n") == 1 and "unpickled" not in captured.out


def test_a_missing_file_or_a_folder_is_refused(tmp_path, capsys):
    assert main(["build", "insightface-bin", str(tmp_path / "lfw.bin"), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'lfw.bin'}: source file does not exist\n"
    assert main(["build", "insightface-bin", str(tmp_path), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: not a file: insightface-bin reads one\n"
