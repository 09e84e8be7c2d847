"""The face geometry a build declares (shards/geometry.py) and what the face task does with it:
evaluation on the training canvas, and benchmark sets aligned on another template refused."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facetrain import face_task
from facetrain.config import FaceTripletConfig
from facetrain.face_task import FaceTripletTask
from launcher.runtime.dist import DistInfo
from shards.cli import main
from shards.eval_reader import eval_loader
from shards.stream_config import AugmentConfig, StreamConfig
from shards.verify import stats
from tests.fixtures.datasets import make_casia
from tests.fixtures.insightface import make_bin


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("geometry")
    make_casia(root / "casia")
    make_bin(root / "lfw.bin")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["build", "casia-webface", str(root / "casia"), str(root / "train72"), "--size", "72",
                     "--split", "train=0.5,val=0.5"]) == 0
        assert main(["build", "casia-webface", str(root / "casia"), str(root / "asis"),
                     "--split", "train=0.5,val=0.5"]) == 0
        assert main(["build", "insightface-bin", str(root / "lfw.bin"), str(root / "lfw")]) == 0
    return {"train72": root / "train72", "asis": root / "asis", "lfw": root / "lfw"}


def geometry(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())["geometry"]


def test_builds_declare_their_canvas_and_template(folders):
    assert geometry(folders["train72"]) == {"canvas": 72, "sides": {"min_side": 72, "max_side": 72, "square": True},
                                            "template": None, "resize": 72}
    assert geometry(folders["asis"])["canvas"] == 48  # the fixture's faces, stored as they are
    assert geometry(folders["lfw"])["canvas"] == 32 and geometry(folders["lfw"])["template"] == "arcface112"
    assert "geometry: canvas 72 px (every image 72x72); alignment template none" in stats(folders["train72"])


def config(folders: dict[str, Path], train: str = "train72") -> FaceTripletConfig:
    stream = StreamConfig(shards=str(folders[train]), identities_per_batch=2, images_per_identity=2,
                          augment=AugmentConfig(size=64, crop="random"))
    return FaceTripletConfig(name="face_triplet", stream=stream, eval_split="val", eval_pairs="all",
                             benchmarks=(str(folders["lfw"]),))


class Asked(Exception):
    pass


def test_the_face_task_evaluates_on_the_training_canvas(folders, monkeypatch):
    task = FaceTripletTask(config(folders), DistInfo(0, 1, 0, torch.device("cpu")))
    asked = []

    def loader(*args, **kwargs):
        asked.append((args[0], kwargs["canvas"]))
        raise Asked

    monkeypatch.setattr(face_task, "eval_loader", loader)
    for shards in (task.eval_shards, str(folders["lfw"])):
        with pytest.raises(Asked):
            task.embed_split(None, shards, "test")
    assert asked == [(str(folders["train72"]), 72), (str(folders["lfw"]), 72)]
    monkeypatch.undo()
    summary = task.summary()
    assert summary["evaluation"]["canvas"] == 72 and summary["benchmarks"]["lfw"]["geometry"]["canvas"] == 32
    # a 32 px benchmark image is brought to the 72 px canvas, then the centre 64 px window is scored
    batch = next(iter(eval_loader(str(folders["lfw"]), "test", 0, 1, 4, task.config.stream.augment,
                                  canvas=task.canvas)))
    assert batch["image"].shape[1:] == (3, 64, 64)
    on_own_side = next(iter(eval_loader(str(folders["lfw"]), "test", 0, 1, 4, task.config.stream.augment)))
    assert not np.array_equal(batch["image"].numpy(), on_own_side["image"].numpy())


def test_a_benchmark_on_another_alignment_template_is_refused(folders, tmp_path):
    aligned = tmp_path / "aligned"
    aligned.mkdir()
    for item in folders["train72"].iterdir():
        if item.is_file():
            (aligned / item.name).write_bytes(item.read_bytes())
    manifest = json.loads((aligned / "manifest.json").read_text())
    manifest["geometry"]["template"] = "facenet160"
    (aligned / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"aligned on the arcface112 template, the training shards .* on facenet160"):
        config({**folders, "aligned": aligned}, "aligned").check_inputs()
    config(folders).check_inputs()  # unaligned training faces: nothing declared to compare
