"""Sample keys: unique and stable for any file name (CJK, accents, spaces, very long names),
plain ASCII paths keep their readable key, no input is dropped for a collision."""

from __future__ import annotations

import json
import random
import re

import pytest

from shards.cli import main
from shards.items import MAX_KEY, SourceItem, make_key, unique_keys
from shards.verify import read_samples
from tests.fixtures import datasets


def built_keys(src, out, fmt: str) -> tuple[dict, dict[str, str]]:
    """The manifest and source path -> key of every written sample."""
    assert main(["build", fmt, str(src), str(out), "--maxcount", "5"]) == 0
    assert main(["verify", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    keys = {}
    for shard in manifest["shards"]:
        samples, error = read_samples(out / shard["name"])
        assert error is None
        for key, fields in samples.items():
            keys[json.loads(fields["json"])["source"]] = key
    return manifest, keys


@pytest.mark.parametrize("fmt", ["imagefolder", "casia-webface"])
def test_every_file_kept_with_a_unique_stable_key(tmp_path, fmt):
    relatives = datasets.make_named_identities(tmp_path / "src")
    manifest, keys = built_keys(tmp_path / "src", tmp_path / "out", fmt)
    assert manifest["skipped"] == []
    assert sum(s["count"] for s in manifest["shards"]) == len(relatives) == manifest["splits"]["train"]["samples"]
    assert sorted(keys) == sorted(relatives)
    assert len(set(keys.values())) == len(relatives)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", k) and len(k) <= MAX_KEY for k in keys.values())
    # every identity its own label, whatever its name
    assert set(manifest["labels"]) == set(datasets.NAMED_IDENTITIES)
    assert all(v["count"] == 2 or name == "a_b" for name, v in manifest["labels"].items())
    # plain ASCII paths keep their readable key; the rest keep what is readable, plus a hash
    assert keys["Jose/001.jpg"] == "Jose_001"
    assert re.fullmatch(r"Jose_001_[0-9a-f]{10}", keys["Jos\u00e9/001.jpg"])
    assert re.fullmatch(r"001_[0-9a-f]{10}", keys["李雷/001.jpg"])
    assert re.fullmatch(r"a_b_001_[0-9a-f]{10}", keys["a b/001.jpg"])
    long_keys = [k for source, k in keys.items() if source.startswith("Identity_with")]
    assert all(k.startswith("Identity_with_a_very_long_name_xxx") and len(k) == MAX_KEY for k in long_keys)
    # a_b/001.jpg, a_b/001.png and a.b/001.jpg share the plain key a_b_001: each gets a hash
    assert all(re.fullmatch(r"a_b_001_[0-9a-f]{10}", keys[s]) for s in ("a_b/001.jpg", "a_b/001.png", "a.b/001.jpg"))
    assert re.fullmatch(r"a_b_002_[0-9a-f]{10}", keys["a.b/002.jpg"])
    # a rebuild elsewhere gives the same keys
    _, again = built_keys(tmp_path / "src", tmp_path / "again", fmt)
    assert again == keys


def test_keys_do_not_depend_on_scan_order(tmp_path):
    relatives = ["a_b/1.jpg", "a.b/1.jpg", "a_b/1.png", "李雷/1.jpg", "王芳/1.jpg", "x/1.jpg"]
    items = [SourceItem(make_key(r), str(tmp_path / r), r.split("/")[0], r.split("/")[0], 1) for r in relatives]
    expected = unique_keys(items, tmp_path)
    assert len({i.key for i in expected}) == len(relatives)
    for seed in range(5):
        random.Random(seed).shuffle(items)
        assert unique_keys(items, tmp_path) == expected


def test_a_file_named_like_another_files_hashed_key_still_gets_its_own(tmp_path):
    colliding = [SourceItem("a_1", str(tmp_path / r), "a", "a", 1) for r in ("a/1.jpg", "a/1.png")]
    first = unique_keys(colliding, tmp_path)
    impostor = SourceItem(first[0].key, str(tmp_path / f"{first[0].key}.jpg"), "b", "b", 1)
    keys = [i.key for i in unique_keys([*colliding, impostor], tmp_path)]
    assert len(set(keys)) == 3 and first[0].key in keys  # the plain key stays, the hashed one moves


def test_make_key_examples():
    assert make_key("0000045/001.jpg") == "0000045_001"
    assert make_key("Name.With.Dots/img.v2.png") == "Name_With_Dots_img_v2"
    assert make_key("Jos\u00e9/1.jpg") != make_key("Jose\u0301/1.jpg")  # NFC and NFD: two files, two keys
    assert make_key("Jos\u00e9/1.jpg").startswith("Jose_1_")
    assert make_key("_hidden/1.jpg") != make_key("hidden/1.jpg")
    assert len(make_key("d/" + "n" * 300 + ".jpg")) == MAX_KEY
