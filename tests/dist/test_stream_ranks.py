"""The reader on 2 real ranks x 2 workers: equal steps on uneven shards, exact resume."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shards.cli import main
from shards.verify import read_samples

ENTRY = Path(__file__).with_name("stream_rank.py")


@pytest.fixture(scope="module")
def uneven_shards(tmp_path_factory) -> Path:
    """Shards of very different sample counts: large (noisy) and small (flat) JPEGs under one
    --maxsize, so some shards hold a few samples and others many."""
    root = tmp_path_factory.mktemp("uneven")
    rng = np.random.default_rng(0)
    for identity in range(16):
        folder = root / "src" / f"id{identity:03d}"
        folder.mkdir(parents=True)
        for n in range(10):
            if identity < 8:
                pixels = rng.integers(0, 255, size=(48, 48, 3), dtype=np.uint8)
            else:
                pixels = np.full((48, 48, 3), 10 * identity + n, np.uint8)
            Image.fromarray(pixels).save(folder / f"{n}.jpg", quality=90)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["build", "imagefolder", str(root / "src"), str(root / "out"), "--maxsize", "30KB",
                     "--maxcount", "60"]) == 0
    return root / "out"


def run(shards: Path, out: Path, steps: int, env: dict, position: Path | None = None) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ENTRY),
               str(shards), str(out), str(steps), *([str(position)] if position else [])]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def shard_of_each_key(shards: Path) -> dict[str, str]:
    manifest = json.loads((shards / "manifest.json").read_text())
    return {key: shard["name"] for shard in manifest["shards"] for key in read_samples(shards / shard["name"])[0]}


def test_equal_steps_and_exact_resume_on_two_ranks(uneven_shards, tmp_path, subprocess_env):
    manifest = json.loads((uneven_shards / "manifest.json").read_text())
    counts = [s["count"] for s in manifest["shards"]]
    assert max(counts) > 2 * min(counts)
    steps_per_epoch = sum(counts) // (3 * 2 * 2)  # samples // (P·K · ranks), whatever each rank's shards hold
    full = run(uneven_shards, tmp_path / "full.json", 80, subprocess_env)
    for rank in "01":
        assert len(full[rank]["keys"]) == 80
        assert full[rank]["steps_per_epoch"] == steps_per_epoch
        # every rank closes its epochs at the same batch (the coverage all-reduce is a collective)
        assert full[rank]["epoch_ends"] == list(range(steps_per_epoch, 81, steps_per_epoch))
    assert full["0"]["coverage"] and full["0"]["coverage"] == full["1"]["coverage"]  # reduced over ranks

    # 2 ranks x 2 workers = 4 readers; shards rotate over readers from pass to pass, so within a few
    # passes every rank has read every shard (80 batches of 6 are more than 4 passes of the data).
    shard_of = shard_of_each_key(uneven_shards)
    seen = {rank: {shard_of[key] for batch in full[rank]["keys"] for key in batch} for rank in "01"}
    assert seen["0"] == seen["1"] == {s["name"] for s in manifest["shards"]}

    first = run(uneven_shards, tmp_path / "first.json", 13, subprocess_env)
    resumed = run(uneven_shards, tmp_path / "resumed.json", 17, subprocess_env, position=tmp_path / "first.json")
    for rank in "01":
        assert first[rank]["keys"] == full[rank]["keys"][:13]
        assert resumed[rank]["keys"] == full[rank]["keys"][13:30]
