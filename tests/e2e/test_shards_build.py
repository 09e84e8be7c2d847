"""`shards build` mechanics: resumable, atomic, parallel, and `verify` catches damage."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from PIL import Image

from shards.cli import main
from shards.verify import read_samples
from shards.writer import sha256_of
from tests.fixtures import datasets


def build_args(tmp_path, *extra):
    return ["build", "casia-webface", str(tmp_path / "src"), str(tmp_path / "out"), "--maxcount", "6", *extra]


def manifest(tmp_path) -> dict:
    return json.loads((tmp_path / "out" / "manifest.json").read_text())


def test_two_workers_write_byte_identical_shards(tmp_path):
    datasets.make_casia(tmp_path / "src")
    assert main(build_args(tmp_path, "--workers", "2")) == 0
    parallel = {s["name"]: s["sha256"] for s in manifest(tmp_path)["shards"]}
    (tmp_path / "out").rename(tmp_path / "parallel")
    assert main(build_args(tmp_path)) == 0
    assert {s["name"]: s["sha256"] for s in manifest(tmp_path)["shards"]} == parallel
    assert len(parallel) == 6


def test_rerun_keeps_verified_shards_and_redoes_damaged_ones(tmp_path):
    datasets.make_casia(tmp_path / "src")
    assert main(build_args(tmp_path)) == 0
    first = manifest(tmp_path)
    out = tmp_path / "out"
    (out / "train-000002.tar").unlink()
    with open(out / "train-000004.tar", "r+b") as handle:  # same size, different bytes
        handle.seek(700)
        handle.write(b"XX")
    assert main(build_args(tmp_path)) == 0
    second = manifest(tmp_path)
    assert second["shards_reused"] == len(first["shards"]) - 2
    assert second["shards"] == first["shards"]


def test_shards_of_an_older_build_are_written_again_with_what_this_code_records(tmp_path):
    datasets.make_casia(tmp_path / "src")
    assert main(build_args(tmp_path)) == 0
    first = manifest(tmp_path)
    record = tmp_path / "out" / ".build" / "train-000001.tar.json"
    older = {k: v for k, v in json.loads(record.read_text()).items() if k not in ("pixels", "sides")}
    record.write_text(json.dumps(older))  # what a build before image depth and geometry recorded
    assert main(build_args(tmp_path)) == 0
    second = manifest(tmp_path)
    assert second["shards_reused"] == len(first["shards"]) - 1
    assert second["geometry"] == first["geometry"] and second["splits"] == first["splits"]


def test_killed_build_leaves_nothing_that_looks_complete(tmp_path, capsys):
    datasets.make_casia(tmp_path / "src")
    assert main(build_args(tmp_path)) == 0
    out = tmp_path / "out"
    # What a kill mid-build leaves: a half-written shard, no record for it, no manifest.
    (out / "manifest.json").unlink()
    (out / ".build" / "train-000001.tar.json").unlink()
    (out / "train-000001.tar").rename(out / "train-000001.tar.partial")
    assert main(["verify", str(out)]) == 2
    assert "the build did not finish: run shards build again" in capsys.readouterr().err
    assert main(build_args(tmp_path)) == 0
    assert not list(out.glob("*.partial"))
    assert main(["verify", str(out)]) == 0


def test_verify_reports_truncated_and_altered_shards(tmp_path, capsys):
    datasets.make_casia(tmp_path / "src")
    assert main(build_args(tmp_path)) == 0
    out = tmp_path / "out"
    data = (out / "train-000000.tar").read_bytes()
    (out / "train-000000.tar").write_bytes(data[: len(data) // 2])
    (out / "stray.tar").write_bytes(b"")
    assert main(["verify", str(out)]) == 1
    report = capsys.readouterr().out
    assert f"FAIL {out / 'train-000000.tar'}: {len(data) // 2} bytes, manifest says {len(data)}" in report
    assert f"FAIL {out / 'train-000000.tar'}: unreadable tar after 4 samples (unexpected end of data)" in report
    assert f"FAIL {out / 'train-000000.tar'}: 4 samples, manifest says 5" in report
    assert f"FAIL {out / 'stray.tar'}: tar file not in the manifest" in report


def test_verify_decodes_images(tmp_path, capsys):
    datasets.make_casia(tmp_path / "src")
    assert main(build_args(tmp_path)) == 0
    out = tmp_path / "out"
    record = manifest(tmp_path)
    # Replace one image by garbage of the same length and re-seal the manifest's hash:
    # only decoding can notice.
    path = out / "train-000000.tar"
    samples, _ = read_samples(path)
    jpg = next(iter(samples.values()))["jpg"]
    data = path.read_bytes()
    path.write_bytes(data.replace(jpg, b"\0" * len(jpg), 1))
    record["shards"][0]["sha256"] = sha256_of(path)
    (out / "manifest.json").write_text(json.dumps(record))
    assert main(["verify", str(out)]) == 1
    assert "undecodable jpg" in capsys.readouterr().out
    assert main(["verify", str(out), "--sample", "1000"]) == 1  # a sample that covers every image


def test_other_options_into_the_same_output_are_refused(tmp_path, capsys):
    datasets.make_casia(tmp_path / "src")
    assert main(build_args(tmp_path)) == 0
    assert main(build_args(tmp_path, "--size", "32")) == 2
    assert "holds a build of other input or options" in capsys.readouterr().err


def test_limit_and_bad_arguments(tmp_path, capsys):
    datasets.make_casia(tmp_path / "src")
    assert main(build_args(tmp_path, "--limit", "4")) == 0
    assert sum(s["count"] for s in manifest(tmp_path)["shards"]) == 4
    assert main(["build", "casia-webface", str(tmp_path / "nowhere"), str(tmp_path / "o2")]) == 2
    assert "nowhere: source folder does not exist" in capsys.readouterr().err
    assert main(["build", "idc", str(tmp_path / "src"), str(tmp_path / "o3"), "--align", "mtcnn"]) == 2
    assert "--align is for face formats" in capsys.readouterr().err
    assert main(build_args(tmp_path, "--split", "train=0.5,val=0.2")) == 2
    assert "ratios sum to 0.7, not 1" in capsys.readouterr().err


def test_resize_reencodes_at_the_requested_size(tmp_path):
    datasets.make_casia(tmp_path / "src")
    assert main(build_args(tmp_path, "--size", "32", "--quality", "80")) == 0
    samples, _ = read_samples(tmp_path / "out" / "train-000000.tar")
    assert all(Image.open(io.BytesIO(s["jpg"])).size == (32, 32) for s in samples.values())


def test_python_m_shards_entry_point(tmp_path, subprocess_env):
    datasets.make_orl(tmp_path / "src")
    command = [sys.executable, "-m", "shards", "build", "imagefolder", str(tmp_path / "src"), str(tmp_path / "out")]
    proc = subprocess.run(command, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "train            1        12       3" in proc.stdout
    stats = subprocess.run([sys.executable, "-m", "shards", "stats", str(tmp_path / "out")], env=subprocess_env,
                           capture_output=True, text=True, timeout=120)
    assert "labels: 3; samples per label min 4, median 4, max 4" in stats.stdout
