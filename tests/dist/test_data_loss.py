"""Data that goes missing under a running framework: shards deleted after the build and images
that no longer decode are counted in results.json, within the allowance, and stop the run with
one line (and launch's summary) beyond it."""

from __future__ import annotations

import json
import shutil

from shards.verify import read_samples
from tests.dist.jobs import results, run_job, write_job


def copy_of(face_shards, tmp_path):
    copy = tmp_path / "shards"
    shutil.copytree(face_shards, copy)
    return copy, json.loads((copy / "manifest.json").read_text())


def test_deleted_shards_within_the_allowance_are_left_out_and_counted(face_shards, tmp_path, subprocess_env):
    shards, manifest = copy_of(face_shards, tmp_path)
    train = next(s for s in manifest["shards"] if s["split"] == "train")
    val = next(s for s in manifest["shards"] if s["split"] == "val")
    (shards / train["name"]).unlink()
    (shards / val["name"]).unlink()
    config = write_job(tmp_path, "job", shards, train={"steps": 10},
                       task={"stream": {"max_missing_fraction": 0.3}, "eval_allow_incomplete": True,
                             "eval_pairs_per_fold": 20})  # pairs without replacement from the val shards left
    proc = run_job(config, subprocess_env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = results(config)
    assert report["reader"]["missing_shards"] == 1 and report["reader"]["missing_samples"] == train["count"]
    assert all(e["metrics"]["eval_missing_samples"] == val["count"] for e in report["evaluations"])
    assert f"{shards / train['name']} (missing)" in proc.stderr  # named in the warning


def test_images_that_stop_decoding_beyond_the_allowance_end_the_run_with_one_line(face_shards, tmp_path,
                                                                                  subprocess_env):
    shards, manifest = copy_of(face_shards, tmp_path)
    damaged = shards / next(s for s in manifest["shards"] if s["split"] == "train")["name"]
    data = damaged.read_bytes()
    samples, _ = read_samples(damaged)
    for fields in list(samples.values())[::2]:  # every other image zeroed in place: same size, undecodable
        data = data.replace(fields["jpg"], b"\0" * len(fields["jpg"]), 1)
    damaged.write_bytes(data)
    config = write_job(tmp_path, "job", shards, train={"steps": 40, "eval_at_start": False})
    proc = run_job(config, subprocess_env)
    assert proc.returncode != 0
    summary = proc.stderr.splitlines()[-2:]
    assert summary[0].startswith("launch: the job failed; rank ") and " first: " in summary[0], summary
    assert "samples (" in summary[0] and "more than the 1.0% allowed by max_missing_fraction) to undecodable " \
        "images or damaged shards" in summary[0]
    assert summary[1].startswith("launch: newest complete checkpoint step00000") or \
        summary[1].startswith("launch: no complete checkpoint yet; start again with: launch ")
