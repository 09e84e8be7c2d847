"""`make demo`, in its short form: generated CASIA-WebFace folder -> shards -> a 2-process
DeepSpeed job -> verification before, halfway and after, so the demo cannot break unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_short_demo_runs_every_stage_and_learns(tmp_path, subprocess_env):
    proc = subprocess.run([sys.executable, "-m", "facetrain.demo", "--short", "--work", str(tmp_path)],
                          env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "writing 60 synthetic identities x 12 images" in proc.stdout
    assert "shards build casia-webface" in proc.stdout
    run = tmp_path / "face_demo_short"
    report = json.loads((run / "results.json").read_text())
    assert report["world_size"] == 2 and report["steps"] == 40
    evaluations = [e["metrics"] for e in report["evaluations"]]
    assert [e["step"] for e in report["evaluations"]] == [0, 20, 40]
    # 12 held-out identities, 3000 pairs; measured 0.66 -> 0.91 accuracy, 0.73 -> 0.97 AUC.
    before, after = evaluations[0], evaluations[-1]
    assert after["verification_accuracy"] >= before["verification_accuracy"] + 0.15
    assert after["verification_auc"] >= before["verification_auc"] + 0.15
    assert "verification_accuracy" in proc.stdout.split("results (")[-1]  # the final table is printed
    assert (run / "roc.png").read_bytes()[:4] == b"\x89PNG"
    # the .bin-format set of identities of its own (shards build insightface-bin): measured 0.72 -> 0.94
    # accuracy, 0.79 -> 0.99 AUC
    assert "shards build insightface-bin" in proc.stdout
    assert before["heldout_faces_pairs"] == after["heldout_faces_pairs"] == 200
    assert after["heldout_faces_auc"] >= before["heldout_faces_auc"] + 0.1, (before, after)
