"""`launch` of a medical job checks what only a medical job can get wrong, before any process
starts: a patient both trained and evaluated on."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import yaml

from medtrain.demo_data import write_figshare_layout
from shards.cli import main as shards_main

DEMO = Path(__file__).parents[2] / "configs" / "med" / "demo.yaml"


def test_a_patient_in_the_training_and_the_evaluation_split_is_one_line_before_anything_starts(tmp_path,
                                                                                               subprocess_env):
    write_figshare_layout(tmp_path / "figshare", patients=6, slices_per_patient=2, size=32)
    with contextlib.redirect_stdout(io.StringIO()):
        assert shards_main(["build", "figshare-tumor", str(tmp_path / "figshare"), str(tmp_path / "shards"),
                            "--split", "train=0.5,val=0.5"]) == 0
    job = yaml.safe_load(DEMO.read_text())
    job["run_dir"] = str(tmp_path / "run")
    job["task"]["stream"]["shards"] = str(tmp_path / "shards")
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(job))
    ok = subprocess.run([sys.executable, "-m", "launcher", str(config), "--dry-run"], env=subprocess_env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    proc = subprocess.run([sys.executable, "-m", "launcher", str(config), "--set", "task.eval_split=train"],
                          env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "patient(s) in both the training split 'train' of" in lines[0], proc.stderr
    assert "the evaluation would measure memory, not diagnosis" in lines[0]
    assert not (tmp_path / "run").exists()
