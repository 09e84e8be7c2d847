"""``facetrain evaluate``: a face checkpoint's verification figures on shard folders, without training.

Each set is evaluated by the face task's own ``evaluate`` (facetrain/face_task.py) with the
checkpoint's config aimed at it, so the figures are those a training run would log for it: the same
preprocessing and flip test, every rank embedding its share with one gather, the LFW protocol.  A
folder with its own pairs (``shards build insightface-bin`` or ``lfw-pairs``) is scored on them
(split ``test``); any other on pairs drawn from the held-out identities of a split (``FOLDER:SPLIT``,
default the config's ``eval_split``), as during training.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from facetrain.checkpoint_model import FaceCheckpoint
from facetrain.config import FaceTripletConfig
from facetrain.face_task import SETUP_ERRORS, FaceTripletTask, headline
from facetrain.ijb import evaluate_ijb_folder
from facetrain.model import AttentionFaceNet
from facetrain.verification import TAR_FAR_TARGETS, VerificationResult, plot_roc
from launcher.errors import JobError, reported_as_job_error
from launcher.runtime.dist import DistInfo
from shards.availability import split_availability
from shards.files import write_json_atomic
from shards.manifest import load_manifest


@dataclass(frozen=True)
class EvaluationSet:
    name: str
    """The folder's name: the set's key in results.json and its label in the table and plots."""
    folder: str
    split: str
    own_pairs: bool
    """Scored on the folder's pairs (manifest["pairs"]), not on pairs drawn from its identities."""
    templates: bool = False
    """An IJB-B/C build: scored on its template pairs (facetrain/ijb.py)."""


@dataclass(frozen=True)
class OneSetConfig(FaceTripletConfig):
    """The checkpoint's task config aimed at one evaluation set, whose inputs are that set alone: the
    training shards need not be on this machine (the checkpoint records their face geometry)."""

    def check_inputs(self) -> None:
        split_availability(self.eval_shards, self.eval_split).check(1.0 if self.eval_allow_incomplete else 0.0)


def evaluation_sets(specs: list[str], config: FaceTripletConfig,
                    training_geometry: dict[str, Any]) -> list[EvaluationSet]:
    """``FOLDER[:SPLIT]`` entries, checked (manifest, pairs or the split, its shards there, a set's
    alignment template against the training geometry); with none, the sets the run itself evaluated
    (its held-out split and task.benchmarks)."""
    if not specs:
        specs = [f"{config.eval_shards or config.stream.shards}:{config.eval_split}", *config.benchmarks]
    allowance = 1.0 if config.eval_allow_incomplete else 0.0
    sets = []
    for spec in specs:
        folder, colon, split = spec.rpartition(":")
        if not colon or "/" in split:  # no split named (a colon in the folder's path is not one)
            folder, split = spec, ""
        with reported_as_job_error(*SETUP_ERRORS):
            manifest = load_manifest(Path(folder))
            templates = "ijb" in manifest
            own_pairs = "pairs" in manifest or templates
            split = split or ("test" if own_pairs else config.eval_split)
            if not own_pairs and split not in manifest["splits"]:
                raise JobError(f"{folder}: no pairs (an insightface-bin or lfw-pairs build has them) and no split "
                               f"{split!r} to draw pairs from (it has {', '.join(manifest['splits'])}; name one "
                               f"as {folder}:SPLIT)")
            if own_pairs and split == "test":
                config.check_benchmark(folder, training_geometry)  # as task.benchmarks: pairs, alignment
            else:
                split_availability(folder, split).check(allowance)
        sets.append(EvaluationSet(Path(folder).resolve().name, folder, split, own_pairs, templates))
    names = [s.name for s in sets]
    if len(set(names)) < len(names):
        raise JobError(f"evaluate: sets are named by their folder, and two share a name: {', '.join(names)}")
    return sets


def evaluate_sets(checkpoint: FaceCheckpoint, network: AttentionFaceNet, sets: list[EvaluationSet], dist: DistInfo,
                  out_dir: Path) -> tuple[dict[str, VerificationResult], dict[str, float]]:
    """Each set's result and the figures named as a training run names a benchmark's (<set>_accuracy,
    ..., <set>_missing_samples), on every rank; rank 0 writes each set's ROC to ``out_dir/<set>/roc.png``."""
    settings = {f.name: getattr(checkpoint.config, f.name) for f in fields(FaceTripletConfig)}
    results, metrics = {}, {}
    for one in sets:
        if dist.is_main:
            (out_dir / one.name).mkdir(parents=True, exist_ok=True)
        config = OneSetConfig(**{**settings, "eval_shards": one.folder, "eval_split": one.split, "benchmarks": ()})
        with reported_as_job_error(*SETUP_ERRORS):  # e.g. too few identities to draw pairs from
            task = FaceTripletTask(config, dist, geometry=checkpoint.geometry)
            if one.templates:  # no ROC of image pairs: the figures are the template pairs' (facetrain/ijb.py)
                keys, _, embeddings, missing = task.embed_split(network, one.folder, one.split)
                metrics |= {**evaluate_ijb_folder(one.folder, keys, embeddings, one.name),
                            f"{one.name}_missing_samples": float(missing)}
                continue
            missing = task.evaluate(network, checkpoint.step, out_dir / one.name)["eval_missing_samples"]
        results[one.name] = task.history[checkpoint.step]
        metrics |= {**headline(results[one.name], one.name), f"{one.name}_missing_samples": missing}
    return results, metrics


def write_outputs(checkpoint: FaceCheckpoint, sets: list[EvaluationSet], results: dict[str, VerificationResult],
                  metrics: dict[str, float], world_size: int, out_dir: Path) -> None:
    """results.json and roc.png (a curve per set) in ``out_dir``."""
    write_json_atomic(out_dir / "results.json", {
        "checkpoint": str(checkpoint.path), "step": checkpoint.step, "world_size": world_size,
        "flip_test": checkpoint.config.flip_test,
        "sets": {one.name: {"folder": one.folder, "split": one.split,
                            "pairs": "the folder's own" if one.own_pairs else "drawn from the split's identities"}
                 for one in sets},
        "metrics": metrics}, indent=2)
    if results:  # IJB sets have no curve of image pairs
        plot_roc(results, out_dir / "roc.png")


def format_results(results: dict[str, VerificationResult], sets: list[EvaluationSet],
                   metrics: dict[str, float]) -> str:
    """One row per set of image pairs: accuracy ± std over the folds, AUC, EER, TAR at each FAR ('-'
    with too few pairs); then one per IJB set: its template pairs' TAR at each FAR and AUC."""
    header = ["set", "pairs", "accuracy", "AUC", "EER", *(f"TAR@FAR={label}" for label in TAR_FAR_TARGETS)]
    rows = [[name, str(r.pairs), f"{r.accuracy:.4f} ± {r.accuracy_std:.4f}", f"{r.auc:.4f}", f"{r.eer:.4f}",
             *("-" if r.tar_at_far[label] is None else f"{r.tar_at_far[label]:.4f}" for label in TAR_FAR_TARGETS)]
            for name, r in results.items()]
    tables = [table(header, rows)] if rows else []
    ijb = [one.name for one in sets if one.templates]
    if ijb:
        labels = [f"1e-{k}" for k in range(6, 0, -1)]
        header = ["IJB set", "template pairs", *(f"TAR@FAR={label}" for label in labels), "AUC"]
        rows = [[name, f"{metrics[f'{name}_pairs']:.0f}",
                 *(f"{metrics[f'{name}_tar_at_far_{label}']:.4f}" if f"{name}_tar_at_far_{label}" in metrics else "-"
                   for label in labels), f"{metrics[f'{name}_auc']:.4f}"] for name in ijb]
        tables.append(table(header, rows))
    return "\n\n".join(tables)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
                     for row in [header, *rows])
