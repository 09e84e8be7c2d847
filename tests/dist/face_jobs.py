"""Small face_triplet jobs on shards built from a synthetic CASIA-WebFace folder."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import yaml

from facetrain.demo_data import write_casia_layout
from shards.cli import main as shards_main

FACE_JOB = {
    "task": {
        "name": "face_triplet",
        "stream": {"shards": "", "identities_per_batch": 4, "images_per_identity": 3, "buffer_samples": 96,
                   "num_workers": 1, "open_shards": 2, "augment": {"size": 32}},
        "model": {"backbone": "small", "image_size": 32, "freeze": "none"},
        "eval_pairs_per_fold": 40,
        "eval_batch_size": 64,
    },
    "train": {"steps": 20, "seed": 1, "log_every": 5, "eval_at_start": True},
    # Warm-up and a moderate rate: with lr 2e-3 from step 0 these 12-image batches collapse every
    # embedding onto one point within 20 steps (d(a,p) and d(a,n) -> 0, loss = margin).
    "optimizer": {"name": "adamw", "lr": 5.0e-4},
    "schedule": {"warmup_steps": 10},
    "deepspeed": {"zero_stage": 1},
    "checkpoint": {"every_steps": 10, "keep_last": 0},
}


def build_face_shards(root: Path) -> Path:
    write_casia_layout(root / "casia", identities=30, images_per_identity=8, size=36)
    with contextlib.redirect_stdout(io.StringIO()):
        assert shards_main(["build", "casia-webface", str(root / "casia"), str(root / "shards"),
                            "--split", "train=0.7,val=0.3", "--maxcount", "40"]) == 0
    return root / "shards"


def write_face_job(directory: Path, name: str, shards: Path, **sections) -> Path:
    job = json.loads(json.dumps(FACE_JOB))
    job["task"]["stream"]["shards"] = str(shards)
    for section, values in sections.items():
        job[section].update(values)
    job["run_dir"] = str(directory / name)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path
