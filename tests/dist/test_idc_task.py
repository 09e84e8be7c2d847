"""The IDC side of the medical task, 2 processes on shards of patches in the Kaggle layout:
PatchConvNet's class-attention overlays, binary metrics with the positive class named, patients
scored by the any-positive rule, and each evaluation patient's slide rebuilt from the patch
coordinates in the file names."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import yaml
from PIL import Image

from shards.cli import main as shards_main
from tests.dist.jobs import results, run_job
from tests.fixtures.datasets import make_idc_patients

PATIENTS = {"1001": (12, 6), "1002": (10, 8), "1003": (14, 4), "1004": (9, 9), "1005": (12, 6), "1006": (8, 10)}


def test_patchconvnet_on_idc_patches_draws_attention_and_slides(tmp_path, subprocess_env):
    make_idc_patients(tmp_path / "idc", PATIENTS)
    with contextlib.redirect_stdout(io.StringIO()):
        assert shards_main(["build", "idc", str(tmp_path / "idc"), str(tmp_path / "shards"),
                            "--split", "train=0.5,val=0.5", "--stratify", "--seed", "0"]) == 0
    job = {
        "run_dir": str(tmp_path / "run"),
        "task": {"name": "medical_classification",
                 "stream": {"shards": str(tmp_path / "shards"), "mode": "shuffle", "batch_size": 8,
                            "buffer_samples": 64, "num_workers": 1,
                            "augment": {"size": 64, "crop": "center", "hflip": True, "normalize": "imagenet"}},
                 "model": {"name": "patchconvnet_s60", "flavour": "cpu", "patch_size": 8},
                 "bootstrap": 50, "patients": "mean", "patient_label": "any_positive", "overlays": 4,
                 "slide_mosaics": 2},
        "train": {"steps": 6, "log_every": 3},
        "optimizer": {"name": "lamb", "lr": 3.0e-3, "weight_decay": 0.01},
        "deepspeed": {"zero_stage": 1},
    }
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(job))
    proc = run_job(config, subprocess_env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    run = tmp_path / "run"
    metrics = results(config)["evaluations"][-1]["metrics"]
    assert {"auc", "sensitivity", "specificity", "patient_accuracy"} <= set(metrics)
    clinical = json.loads((run / "clinical" / "step00000006.json").read_text())
    assert clinical["cases"]["positive_class"] == "idc_positive"
    assert clinical["patients"]["num_cases"] == 3  # the evaluation split's patients, each positive
    # every patient has IDC-positive patches: the patient-level AUC is undefined, and says why
    assert clinical["patients"]["auc_undefined"] == {"idc_negative": "no positive case in the evaluation split",
                                                      "idc_positive": "no negative case in the evaluation split"}
    assert clinical["patients"]["scalars"]["auc"] is None and "patient_auc" not in metrics
    evaluated = json.loads((tmp_path / "shards" / "manifest.json").read_text())["splits"]["val"]["patients"]
    slides = sorted((run / "slides").glob("*.png"))
    assert [p.stem for p in slides] == sorted(evaluated)[:2]
    for picture in [run / "attention.png", *slides]:
        assert np.asarray(Image.open(picture).convert("L"), dtype=float).std() > 10, picture
