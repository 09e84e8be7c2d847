"""Duplicate images at build time through the real `shards build`: the same bytes under two
names, the same picture re-encoded (JPEG quality, PNG) found by the perceptual hash, copies
across identities and across splits (a leak), and --duplicates drop."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from shards.cli import main
from shards.duplicates import perceptual_hash
from shards.verify import read_samples, stats
from tests.fixtures import datasets

NEAR = ["--near-duplicates", "4"]


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """Four identities of three 112-px faces, plus: an exact copy of p1/1.jpg in p2, p3/1.jpg
    saved again as PNG in p3 and at JPEG quality 60 in p4."""
    root = tmp_path_factory.mktemp("dupes")
    for k, images in enumerate(datasets.faces(4, 3, size=112)):
        (root / f"p{k + 1}").mkdir()
        for n, image in enumerate(images, 1):
            image.save(root / f"p{k + 1}" / f"{n}.jpg", quality=90)
    shutil.copy(root / "p1" / "1.jpg", root / "p2" / "9.jpg")
    picture = Image.open(root / "p3" / "1.jpg")
    picture.save(root / "p3" / "8.png")
    picture.save(root / "p4" / "7.jpg", quality=60)
    return root


def build(src: Path, out: Path, *options: str) -> dict:
    assert main(["build", "imagefolder", str(src), str(out), *options]) == 0
    return json.loads((out / "manifest.json").read_text())


def test_reencoded_copies_hash_close_and_distinct_faces_far(src):
    def distance(x: Path, y: Path) -> int:
        return bin(perceptual_hash(x.read_bytes()) ^ perceptual_hash(y.read_bytes())).count("1")

    assert distance(src / "p3" / "1.jpg", src / "p3" / "8.png") <= 4
    assert distance(src / "p3" / "1.jpg", src / "p4" / "7.jpg") <= 4
    originals = sorted(src.glob("p*/[123].jpg"))
    assert min(distance(x, y) for i, x in enumerate(originals) for y in originals[i + 1:]) > 4
    grey = io.BytesIO()
    Image.open(src / "p1" / "2.jpg").convert("L").save(grey, format="PNG")  # still the same picture
    original = perceptual_hash((src / "p1" / "2.jpg").read_bytes())
    assert bin(perceptual_hash(grey.getvalue()) ^ original).count("1") <= 4
    assert perceptual_hash(b"not an image") is None


def test_exact_copies_are_always_reported(src, tmp_path):
    manifest = build(src, tmp_path / "out")
    record = manifest["duplicates"]
    assert record["exact"] == [[str(src / "p1" / "1.jpg"), str(src / "p2" / "9.jpg")]]
    assert record["near"] == [] and record["near_distance"] is None  # not asked for
    assert record["across_identities"] == 1 and record["across_splits"] == 0 and record["dropped"] == 0
    assert sum(s["samples"] for s in manifest["splits"].values()) == 15  # report keeps everything


def test_near_copies_across_identities_and_splits(src, tmp_path):
    out = tmp_path / "out"
    manifest = build(src, out, *NEAR, "--split", "val=p4,train=rest")
    record = manifest["duplicates"]
    assert record["exact"] == [[str(src / "p1" / "1.jpg"), str(src / "p2" / "9.jpg")]]
    assert record["near"] == [[str(src / "p3" / "1.jpg"), str(src / "p3" / "8.png"), str(src / "p4" / "7.jpg")]]
    assert record["across_identities"] == 2  # p1/p2, and p3/p4
    assert record["across_splits"] == 1  # p3 (train) and p4 (val): a leak
    assert "duplicates: 1 group(s) of identical files, 1 group(s) of near-duplicates; 2 across identities, " \
           "1 across splits; 0 dropped" in stats(out)


def test_drop_keeps_the_first_copy_and_says_which(src, tmp_path):
    out = tmp_path / "out"
    manifest = build(src, out, *NEAR, "--duplicates", "drop", "--split", "val=p4,train=rest")
    assert manifest["duplicates"]["dropped"] == 3 and manifest["duplicates"]["across_splits"] == 1
    dropped = {s["path"]: s["reason"] for s in manifest["skipped"] if s["reason"].startswith("duplicate")}
    assert dropped == {
        str(src / "p2" / "9.jpg"): f"duplicate of {src / 'p1' / '1.jpg'} (same bytes)",
        str(src / "p3" / "8.png"): f"duplicate of {src / 'p3' / '1.jpg'} (the same picture: perceptual hashes "
                                   "within 4 bits)",
        str(src / "p4" / "7.jpg"): f"duplicate of {src / 'p3' / '1.jpg'} (the same picture: perceptual hashes "
                                   "within 4 bits)",
    }
    written = [json.loads(fields["json"])["source"] for shard in manifest["shards"]
               for fields in read_samples(out / shard["name"])[0].values()]
    assert len(written) == 12 and not {"p2/9.jpg", "p3/8.png", "p4/7.jpg"} & set(written)
    assert manifest["splits"]["val"]["samples"] == 3  # the split is the same as without drop: p4 stays val
