"""`make demo-med`, in its short form: figshare-layout .mat files -> shards with patient-level
splits -> a 2-process DeepSpeed job -> the clinical evaluation before, halfway and after, with
its pictures, so the medical demo cannot break unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image


def test_the_short_medical_demo_runs_every_stage_and_learns(tmp_path, subprocess_env):
    proc = subprocess.run([sys.executable, "-m", "medtrain.demo", "--short", "--work", str(tmp_path)],
                          env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "writing 24 synthetic patients x 6 MRI slices" in proc.stdout
    run = tmp_path / "med_demo_short"
    report = json.loads((run / "results.json").read_text())
    assert report["world_size"] == 2 and report["steps"] == 40
    assert [e["step"] for e in report["evaluations"]] == [0, 20, 40]
    before, after = report["evaluations"][0]["metrics"], report["evaluations"][-1]["metrics"]
    # 9 held-out patients x 6 slices, 3 balanced classes (chance 1/3); measured 0.33 -> 0.59
    # balanced accuracy, 0.56 -> 0.78 macro AUC, 1.22 -> 0.89 loss in 40 steps
    assert after["balanced_accuracy"] >= before["balanced_accuracy"] + 0.15, (before, after)
    assert after["auc_macro"] >= before["auc_macro"] + 0.12 and after["loss"] < before["loss"] - 0.2
    assert report["best"]["metric"] == "balanced_accuracy"
    clinical = json.loads((run / "clinical" / "step00000040.json").read_text())
    assert clinical["cases"]["num_cases"] == sum(sum(row) for row in clinical["cases"]["confusion_matrix"])
    for where in (report, clinical):  # how the data was split, cited with the numbers
        assert where["data"]["evaluation"]["split_method"]["method"] == "stratified"
        assert where["data"]["evaluation"]["split_method"]["group"] == "patient"
    assert "balanced_accuracy" in proc.stdout.split("clinical evaluation at step 40")[-1]
    for picture in ("roc.png", "confusion_matrix.png", "reliability.png", "attention.png", "patients/roc.png"):
        pixels = np.asarray(Image.open(run / picture).convert("L"), dtype=float)
        assert pixels.std() > 10, picture  # drawn, not blank
