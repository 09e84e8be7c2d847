"""A face checkpoint as a model to use: its ``config.yaml`` (the run's resolved config) and the face
geometry of its training shards, read first so a command can check its other inputs against them,
then the embedding network with the checkpoint's fp32 weights, in eval mode.

The margin head (class centres of the training identities) is left out: nothing after training
needs it.  Every problem with the checkpoint is a ``JobError`` naming it.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from facetrain.config import FaceTripletConfig
from facetrain.model import AttentionFaceNet
from launcher.config.loader import read_yaml_mapping
from launcher.config.schema import load_job_config
from launcher.errors import JobError
from launcher.run_dir import RunDir, source_checkpoint
from launcher.runtime.init_from import MODEL_STATES, fp32_weights
from shards.geometry import geometry_of
from shards.manifest import ManifestError, load_manifest

NETWORK = "network."
"""Prefix of the embedding network's keys in a face checkpoint (facetrain.face_task.FaceEmbeddingModel)."""


@dataclass(frozen=True)
class FaceCheckpoint:
    path: Path
    """The checkpoint folder (stepNNNNNNNN)."""
    step: int
    config: FaceTripletConfig
    geometry: dict[str, Any]
    """The training shards' face geometry (shards/geometry.py); {} for shards built before it."""

    @property
    def canvas(self) -> int | None:
        """The side evaluation brings images to: faces at the training scale."""
        return self.geometry.get("canvas")

    def load_network(self) -> AttentionFaceNet:
        """The embedding network with the checkpoint's fp32 weights, in eval mode."""
        # The checkpoint holds every weight: the backbone's pretrained file need not be on this machine.
        network = AttentionFaceNet(replace(self.config.model, pretrained="none"))
        # DeepSpeed's zero_to_fp32 prints its progress and a progress bar; a command's output is its own.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            weights = fp32_weights(self.path)
        missing, unexpected = network.load_state_dict(
            {k.removeprefix(NETWORK): v for k, v in weights.items() if k.startswith(NETWORK)}, strict=False)
        if missing or unexpected:
            keys = ", ".join([*missing, *unexpected][:4])
            raise JobError(f"{self.path}: its weights do not fit the network its config.yaml describes "
                           f"({len(missing)} missing, {len(unexpected)} unexpected: {keys}, ...)")
        return network.eval()


def face_checkpoint(path: str | Path, command: str) -> FaceCheckpoint:
    """``path``: a checkpoint folder, or a run directory (its newest complete checkpoint); its config
    read and checked, its weights not yet.  ``command`` starts every error line."""
    checkpoint = source_checkpoint(path, command)
    config_path = checkpoint / "config.yaml"
    if not config_path.is_file() or not (checkpoint / MODEL_STATES).is_file():
        raise JobError(f"{command}: {checkpoint} has no config.yaml or no {MODEL_STATES} (not a checkpoint of "
                       "this framework?)")
    task = read_yaml_mapping(config_path).get("task")
    name = task.get("name") if isinstance(task, dict) else None
    if name != "face_triplet":  # checked before loading: the config of another task imports that task's package
        raise JobError(f"{command}: {checkpoint} is a checkpoint of task {name!r}, not a face checkpoint "
                       "(face_triplet)")
    config: FaceTripletConfig = load_job_config(config_path).task
    step = json.loads((checkpoint / RunDir.COMPLETE_MARKER).read_text())["step"]
    return FaceCheckpoint(checkpoint, step, config, training_geometry(checkpoint, config, command))


def training_geometry(checkpoint: Path, config: FaceTripletConfig, command: str) -> dict[str, Any]:
    """The training shards' face geometry (shards/geometry.py: the canvas evaluation brings images
    to, the alignment template): as the face task recorded it in the checkpoint, or, for a
    checkpoint from before that, from the training shards' manifest."""
    task_state = torch.load(checkpoint / RunDir.rank_state_name(0), map_location="cpu",
                            weights_only=False)["train_state"].get("task", {})
    if "geometry" in task_state:
        return task_state["geometry"]
    try:
        return geometry_of(load_manifest(Path(config.stream.shards)))
    except ManifestError as exc:
        raise JobError(f"{command}: {checkpoint} predates recording its face geometry, which then comes from the "
                       f"training shards' manifest, and {exc} (task.stream.shards of its config.yaml; the "
                       "manifest.json alone is enough)") from None
