"""`facetrain evaluate | embed | export-onnx` on a checkpoint of a real (tiny) face_triplet run."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from PIL import Image

from facetrain.checkpoint_model import face_checkpoint
from facetrain.cli import main
from facetrain.onnx_export import EXAMPLE_BATCH, onnx_embeddings
from shards.cli import main as shards_main
from tests.conftest import child_env
from tests.dist.jobs import results, run_job, write_job
from tests.fixtures.ijb import make_ijb
from tests.fixtures.insightface import make_bin

STEPS = 3


@pytest.fixture(scope="module")
def trained(face_shards, tmp_path_factory) -> dict:
    """A 3-step run on one process that evaluates its held-out split and a .bin set at its end
    (and checkpoints there), with the .bin set's shard folder."""
    root = tmp_path_factory.mktemp("checkpoint_tools")
    make_bin(root / "agedb_30.bin", num_pairs=40)
    make_ijb(root / "IJBC")
    with contextlib.redirect_stdout(io.StringIO()):
        assert shards_main(["build", "insightface-bin", str(root / "agedb_30.bin"), str(root / "agedb_30")]) == 0
        assert shards_main(["build", "ijbc", str(root / "IJBC"), str(root / "ijbc")]) == 0
    config = write_job(root, "run", face_shards, train={"steps": STEPS, "eval_at_start": False},
                       checkpoint={"every_steps": STEPS},
                       task={"benchmarks": [str(root / "agedb_30"), str(root / "ijbc")]})
    proc = run_job(config, child_env(), nproc=1)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return {"root": root, "run": root / "run", "bin_set": root / "agedb_30", "results": results(config)}


def evaluate(*argv: str, nproc: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                   f"--nproc-per-node={nproc}"]
    proc = subprocess.run([*launcher, "-m", "facetrain", "evaluate", *argv], env=child_env(), capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc


def test_evaluate_gives_the_runs_own_figures_on_one_process_and_on_two(trained, face_shards, tmp_path):
    # One process, the sets the run evaluated (no --on); two ranks, the same sets named.
    one = evaluate(str(trained["run"]), "--out", str(tmp_path / "one"))
    two = evaluate(str(trained["run"] / "checkpoints" / f"step{STEPS:08d}"), "--out", str(tmp_path / "two"),
                   "--on", f"{face_shards}:val,{trained['bin_set']},{trained['root'] / 'ijbc'}", nproc=2)
    by_one, by_two = (json.loads((tmp_path / out / "results.json").read_text()) for out in ("one", "two"))
    assert by_one["metrics"] == by_two["metrics"] and (by_one["world_size"], by_two["world_size"]) == (1, 2)
    assert by_one["step"] == STEPS and by_one["sets"]["agedb_30"]["pairs"] == "the folder's own"
    # What the run logged at the same step: its held-out split as verification_*, the .bin set as agedb_30_*.
    logged = trained["results"]["evaluations"][-1]
    assert logged["step"] == STEPS
    renamed = {("shards_missing_samples" if k == "eval_missing_samples" else k.replace("verification_", "shards_")): v
               for k, v in logged["metrics"].items()}
    assert by_one["metrics"] == renamed
    assert by_one["metrics"]["agedb_30_pairs"] == 40 and by_one["metrics"]["shards_pairs"] == 400
    assert by_one["metrics"]["ijbc_pairs"] > 0 and "ijbc_auc" in by_one["metrics"]  # template pairs (facetrain/ijb.py)
    for proc in (one, two):
        # heading, header, two sets of image pairs, a blank line, the IJB header and row, paths
        assert "TAR@FAR=1e-3" in proc.stdout and proc.stdout.count("\n") == 8
        assert f"{by_one['metrics']['ijbc_auc']:.4f}" in proc.stdout.splitlines()[6]
        assert f"{by_one['metrics']['agedb_30_accuracy']:.4f} ± " in proc.stdout
    for plot in ("roc.png", "shards/roc.png", "agedb_30/roc.png"):
        assert (tmp_path / "two" / plot).read_bytes()[:4] == b"\x89PNG"


def test_embed_writes_every_decodable_image_and_the_nearest_gallery_identities(trained, face_shards, tmp_path):
    casia = face_shards.parent / "casia"
    identities = sorted(p.name for p in casia.iterdir())[:4]
    gallery, queries = tmp_path / "gallery", tmp_path / "queries"
    for identity in identities[1:]:
        shutil.copytree(casia / identity, gallery / identity, ignore=lambda _, names: sorted(names)[3:])
    solo = sorted((casia / identities[0]).iterdir())[0]
    (gallery / "solo").mkdir()
    shutil.copy(solo, gallery / "solo" / solo.name)  # an identity of one image: its centre is that image's embedding
    (gallery / "loose.jpg").write_bytes(solo.read_bytes())  # in no identity folder
    (queries / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(solo, queries / "same_as_solo.jpg")
    Image.open(sorted((casia / identities[2]).iterdir())[5]).save(queries / "nested" / "deeper" / "other.png")
    (queries / "nested" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (queries / "notes.txt").write_text("not an image")
    checkpoint = str(trained["run"])

    assert main(["embed", checkpoint, str(queries), "--out", str(tmp_path / "out"), "--gallery", str(gallery),
                 "--top", "2", "--batch-size", "1"]) == 0
    embeddings = np.load(tmp_path / "out" / "embeddings.npy")
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["images"] == ["nested/deeper/other.png", "same_as_solo.jpg"]
    assert embeddings.dtype == np.float32 and embeddings.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-6)
    assert [s["path"] for s in index["skipped"]] == ["nested/broken.jpg", "notes.txt"]
    assert all("cannot decode" in s["reason"] for s in index["skipped"])
    assert index["gallery"]["identities"] == 4 and index["gallery"]["images"] == 10
    assert index["gallery"]["skipped"] == [{"path": "loose.jpg", "reason": "not in an <identity>/ folder"}]
    with open(tmp_path / "out" / "nearest.csv") as handle:
        nearest = list(csv.DictReader(handle))
    assert [(row["query"], row["rank"]) for row in nearest] == [
        ("nested/deeper/other.png", "1"), ("nested/deeper/other.png", "2"), ("same_as_solo.jpg", "1"),
        ("same_as_solo.jpg", "2")]
    assert nearest[2]["identity"] == "solo" and float(nearest[2]["cosine"]) == pytest.approx(1, abs=1e-6)

    # Each identity is the normalised mean of its images: the gallery embedded as queries gives them.
    assert main(["embed", checkpoint, str(gallery), "--out", str(tmp_path / "gallery_out")]) == 0
    rows = json.loads((tmp_path / "gallery_out" / "index.json").read_text())["images"]
    gallery_embeddings = np.load(tmp_path / "gallery_out" / "embeddings.npy")
    for row in nearest[:2]:
        mine = gallery_embeddings[[i for i, path in enumerate(rows) if path.startswith(row["identity"] + "/")]]
        centre = mine.sum(0) / np.linalg.norm(mine.sum(0))
        assert float(row["cosine"]) == pytest.approx(float(embeddings[0] @ centre), abs=1e-5)


def test_onnx_export_matches_pytorch_at_other_batch_sizes(trained, tmp_path):
    path = tmp_path / "face.onnx"
    assert main(["export-onnx", str(trained["run"]), str(path)]) == 0
    report = json.loads(path.with_name("face.onnx.json").read_text())
    assert report["parity"]["max_abs_diff"] <= 1e-4 and report["parity"]["batch"] != EXAMPLE_BATCH
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == ["embeddings"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch dimension
    network = face_checkpoint(trained["run"], "test").load_network()
    for batch in (1, 5):
        images = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = network(images)[0].numpy()
        assert np.abs(onnx_embeddings(path, images.numpy()) - expected).max() <= 1e-4


def moved_checkpoint(trained: dict, to: Path) -> Path:
    """The run's checkpoint copied to another machine, its training shards not there."""
    moved = shutil.copytree(trained["run"] / "checkpoints" / f"step{STEPS:08d}", to)
    config = yaml.safe_load((moved / "config.yaml").read_text())
    config["task"]["stream"]["shards"] = str(to.parent / "elsewhere")
    (moved / "config.yaml").write_text(yaml.safe_dump(config))
    return moved


def test_a_checkpoint_is_used_without_its_training_shards(trained, tmp_path):
    moved = moved_checkpoint(trained, tmp_path / "moved")
    assert face_checkpoint(moved, "evaluate").canvas == 36  # recorded by the face task: tests/dist/jobs.py's faces
    evaluate(str(moved), "--on", str(trained["bin_set"]), "--out", str(tmp_path / "out"))
    metrics = json.loads((tmp_path / "out" / "results.json").read_text())["metrics"]
    assert metrics["agedb_30_accuracy"] == trained["results"]["evaluations"][-1]["metrics"]["agedb_30_accuracy"]


def test_bad_inputs_are_one_line_and_exit_2(trained, face_shards, tmp_path, capsys):
    not_face = tmp_path / "medical" / "checkpoints" / "step00000001"
    not_face.mkdir(parents=True)
    (not_face / "complete.json").write_text('{"step": 1}')
    (not_face / "config.yaml").write_text("task:\n  name: medical_classification\n")
    (not_face / "mp_rank_00_model_states.pt").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    run = str(trained["run"])
    older = moved_checkpoint(trained, tmp_path / "older")
    rank_state = torch.load(older / "rank00000.pt", weights_only=False)
    del rank_state["train_state"]["task"]["geometry"]  # as checkpoints saved before 2026-12-03 are
    torch.save(rank_state, older / "rank00000.pt")
    cases = {
        ("evaluate", str(tmp_path / "nowhere")): f"evaluate: {tmp_path / 'nowhere'} does not exist",
        ("evaluate", str(tmp_path / "empty")): "is neither a run directory with a complete checkpoint nor",
        ("embed", str(tmp_path / "medical"), str(tmp_path), "--out", str(tmp_path / "o")):
            "is a checkpoint of task 'medical_classification', not a face checkpoint",
        ("evaluate", str(older)): "predates recording its face geometry, which then comes from the training shards'",
        ("evaluate", run, "--on", f"{face_shards}:test"): f"{face_shards}: no pairs (an insightface-bin or lfw-pairs",
        ("evaluate", run, "--on", str(tmp_path / "empty")): f"{tmp_path / 'empty' / 'manifest.json'}: missing",
        ("embed", run, str(tmp_path / "nothing"), "--out", str(tmp_path / "o")): "is not a folder",
        ("embed", run, str(tmp_path / "empty"), "--out", str(tmp_path / "o")): "no image in",
        ("export-onnx", str(tmp_path / "nowhere"), str(tmp_path / "x.onnx")): "export-onnx: ",
    }
    for argv, message in cases.items():
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (argv, err)
