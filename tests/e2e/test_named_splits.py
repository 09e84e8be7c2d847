"""Splits by name (a list file, or names on the command line) and held-out pairs (--pairs)
through the real `shards build`: the manifest's record, whole groups, and one-line errors for
names that are not in the data or are given twice."""

from __future__ import annotations

import hashlib
import json
from math import comb
from pathlib import Path

import pytest

from facetrain.face_task import lfw_pairs
from shards.cli import main
from shards.verify import read_samples, stats
from tests.fixtures import datasets

NFC, NFD = "Jos\u00e9", "Jose\u0301"


@pytest.fixture(scope="module")
def named(tmp_path_factory) -> Path:
    """Identities named in CJK, with accents (composed and decomposed), spaces and dots."""
    src = tmp_path_factory.mktemp("named")
    datasets.make_named_identities(src)
    return src


@pytest.fixture(scope="module")
def casia(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("casia")
    datasets.make_casia(src, num_identities=8, per_identity=5)
    return src


def build(src: Path, out: Path, *options: str, fmt: str = "imagefolder") -> dict:
    assert main(["build", fmt, str(src), str(out), *options]) == 0
    return json.loads((out / "manifest.json").read_text())


def split_of_identity(out: Path, manifest: dict) -> dict[str, set[str]]:
    """identity -> the splits its written samples are in."""
    seen: dict[str, set[str]] = {}
    for shard in manifest["shards"]:
        content, error = read_samples(out / shard["name"])
        assert error is None
        for fields in content.values():
            sample = json.loads(fields["json"])
            seen.setdefault(sample["group"], set()).add(sample["split"])
    return seen


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_list_file_puts_exactly_its_identities_in_the_split(named, tmp_path):
    listing = tmp_path / "heldout.txt"
    listing.write_text(f"# held-out identities\n李雷\n\n{NFC}\n  a b  \n李雷\n", encoding="utf-8")
    manifest = build(named, tmp_path / "out", "--split", f"val=@{listing},train=rest")
    seen = split_of_identity(tmp_path / "out", manifest)
    assert all(len(splits) == 1 for splits in seen.values())  # groups whole
    assert {g for g, s in seen.items() if s == {"val"}} == {"李雷", NFC, "a b"}  # not NFD José, not a_b
    assert manifest["splits"]["val"]["groups"] == 3 and manifest["splits"]["train"]["groups"] == 6
    record = manifest["split_method"]
    assert record["method"] == "named" and record["group"] == "identity" and record["rest"] == "train"
    assert record["named"] == {"val": {"names": 3, "file": str(listing),
                                       "sha256": hashlib.sha256(listing.read_bytes()).hexdigest()}}
    assert f"split: named val=@{listing} (3 names), train=rest, by identity" in stats(tmp_path / "out")


def test_names_on_the_command_line_match_exactly(named, tmp_path):
    manifest = build(named, tmp_path / "out", "--split", f"val=王芳+{NFD},test=a.b,train=rest")
    seen = split_of_identity(tmp_path / "out", manifest)
    assert {g for g, s in seen.items() if s == {"val"}} == {"王芳", NFD}
    assert {g for g, s in seen.items() if s == {"test"}} == {"a.b"} and seen[NFC] == {"train"}
    assert manifest["split_method"]["named"] == {"val": {"names": 2}, "test": {"names": 1}}


def test_an_unknown_name_is_one_line_listing_it(named, tmp_path, capsys):
    err = one_line_error(capsys, ["build", "imagefolder", str(named), str(tmp_path / "out"),
                                  "--split", "val=李雷+Jose_,train=rest"])
    assert "1 name(s) are no identity of the data (names must match exactly): 'Jose_'" in err
    assert not (tmp_path / "out").exists()
    many = "+".join(f"nobody{n}" for n in range(8))
    err = one_line_error(capsys, ["build", "imagefolder", str(named), str(tmp_path / "out"),
                                  "--split", f"val={many},train=rest"])
    assert "8 name(s) are no identity" in err and "'nobody4' and 3 more" in err


def test_groups_named_nowhere_need_rest(named, tmp_path, capsys):
    err = one_line_error(capsys, ["build", "imagefolder", str(named), str(tmp_path / "out"), "--split", "val=李雷"])
    assert "8 identity(s) are in no split" in err and "add SPLIT=rest" in err


@pytest.mark.parametrize(("spec", "message"), [
    ("val=李雷+王芳,test=王芳,train=rest", "1 name(s) given for two splits: '王芳' (val and test)"),
    ("val=@{missing},train=rest", "missing.txt: No such file or directory"),
    ("val=@{empty},train=rest", "empty.txt: names nothing (only blank lines and # comments)"),
    ("val=李雷,test=rest,train=rest", "only one split can take the rest, not test and train"),
    ("val=李雷,val=王芳,train=rest", "split 'val' is given twice"),
    ("val=李雷++王芳,train=rest", "an empty name in val=李雷++王芳"),
    ("val=李雷,train=0.8", "train=0.8 is a ratio; ratios and names do not mix"),
])
def test_spec_mistakes_are_one_line_before_the_scan(spec, message, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    spec = spec.format(missing=tmp_path / "missing.txt", empty=tmp_path / "empty.txt")
    # the source does not exist: an error about the spec proves it came before the scan
    err = one_line_error(capsys, ["build", "imagefolder", str(tmp_path / "absent"), str(tmp_path / "out"),
                                  "--split", spec])
    assert message in err


def test_all_pairs_of_a_held_out_split_are_in_the_manifest_for_the_face_task(casia, tmp_path):
    out = tmp_path / "out"
    manifest = build(casia, out, "--split", "val=0000002+0000003+0000004,train=rest", "--pairs", "val=all",
                     fmt="casia-webface")
    val = {name: n for name, n in manifest["splits"]["val"]["labels"].items() if n}
    assert sorted(val) == ["0000002", "0000003", "0000004"]
    matched = sum(comb(n, 2) for n in val.values())
    pairs = manifest["pairs"]
    assert sum(p["same"] for p in pairs) == matched == sum(not p["same"] for p in pairs)
    assert manifest["pairs_method"] == {"split": "val", "spec": "val=all", "seed": 0, "folds": 10,
                                        "matched": matched, "mismatched": matched,
                                        "identity_disjoint": False, "not_written": 0}
    keys = sorted({k for p in pairs for k in (p["a"], p["b"])})
    assert all(k.split("_")[0] in val for k in keys)  # held-out images only
    a, _, same, folds = lfw_pairs(str(out), keys)  # read as the face task reads LFW's
    assert len(a) == len(pairs) and same.sum() == matched and set(folds.tolist()) == set(range(10))
    assert "pairs: " + str(2 * matched) + " in 10 folds (val=all seed 0, identities shared by folds)" in stats(out)


def test_lfw_style_folds_and_too_few_pairs(casia, tmp_path, capsys):
    manifest = build(casia, tmp_path / "out", "--split", "val=0000002+0000003+0000005+0000006,train=rest",
                     "--pairs", "val=2x8", "--seed", "3", fmt="casia-webface")
    assert manifest["pairs_method"]["identity_disjoint"] is True and len(manifest["pairs"]) == 16
    capsys.readouterr()
    err = one_line_error(capsys, ["build", "casia-webface", str(casia), str(tmp_path / "more"),
                                  "--split", "val=0000002+0000003,train=rest", "--pairs", "val=10x600"])
    assert "error: --pairs val: 10x600: 3000 matched pairs asked, the labels have 20" in err
    assert not list((tmp_path / "more").glob("*.tar"))  # refused before anything was written
    err = one_line_error(capsys, ["build", "casia-webface", str(casia), str(tmp_path / "none"), "--pairs", "val=all"])
    assert "no split 'val'; the splits are train" in err
