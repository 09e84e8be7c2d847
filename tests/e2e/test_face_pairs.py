"""The face task's pairs: an lfw-pairs shard folder's own pairs (held-out pairs: tests/unit/test_pairs.py)."""

import contextlib
import io
import json

from facetrain.face_task import lfw_pairs
from shards.cli import main
from tests.fixtures import datasets


def test_lfw_pairs_map_keys_to_embedding_rows_and_keep_folds(tmp_path):
    datasets.make_lfw(tmp_path / "src")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["build", "lfw-pairs", str(tmp_path / "src"), str(tmp_path / "out")]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    keys = sorted({k for p in manifest["pairs"] for k in (p["a"], p["b"])}, reverse=True)  # any row order
    a, b, same, folds = lfw_pairs(str(tmp_path / "out"), keys)
    assert [keys[i] for i in a] == [p["a"] for p in manifest["pairs"]]
    assert [keys[i] for i in b] == [p["b"] for p in manifest["pairs"]]
    assert same.tolist() == [p["same"] for p in manifest["pairs"]] and folds.tolist() == [0, 0, 0, 0, 1, 1, 1]
