"""The face_triplet task's config section (facetrain/face_task.py is the task).  No torch here:
``launch`` validates job configs before any process starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from facetrain.model_config import FaceModelConfig
from launcher.config.schema import TaskConfig
from shards.availability import split_availability
from shards.geometry import geometry_of
from shards.manifest import load_manifest
from shards.stream_config import StreamConfig


@dataclass(frozen=True)
class FaceTripletConfig(TaskConfig):
    """Attention FaceNet trained with online triplet mining."""

    stream: StreamConfig = field(default_factory=lambda: StreamConfig(shards=""))
    model: FaceModelConfig = field(default_factory=FaceModelConfig)
    objective: Literal["triplet", "arcface", "cosface", "triplet+arcface", "triplet+cosface"] = "triplet"
    """The paper's triplet loss, an additive-margin softmax head, or both added."""
    margin: float = 0.2
    """α of the triplet loss (FaceNet: 0.2 on squared distances)."""
    class_margin: float = 0.0
    """m of the ArcFace/CosFace head; 0 takes the head's default (0.5 ArcFace, 0.35 CosFace)."""
    class_scale: float = 64.0
    """s of the ArcFace/CosFace head."""
    head_weight: float = 1.0
    """Weight of the head's loss when added to the triplet loss."""
    mining: Literal["semi_hard", "batch_hard", "batch_all"] = "semi_hard"
    squared: bool = True
    """Squared Euclidean distance (FaceNet) or plain Euclidean."""
    eval_shards: str = ""
    """Shard folder for verification (e.g. an ``lfw-pairs`` build); empty: stream.shards."""
    eval_split: str = "val"
    """Split of the evaluation folder (an lfw-pairs build puts everything in ``test``)."""
    eval_batch_size: int = 128
    eval_folds: int = 10
    eval_pairs_per_fold: int = 300
    """Pairs per fold (half matched, half mismatched) drawn without replacement from the held-out
    identities, when the evaluation folder has no pairs of its own."""
    eval_pairs: Literal["folds", "all"] = "folds"
    """folds: eval_folds x eval_pairs_per_fold, LFW-style (each identity in one fold when there are
    enough); all: every matched pair of the held-out identities and as many mismatched ones."""
    benchmarks: tuple[str, ...] = ()
    """Shard folders of published verification sets (``shards build insightface-bin lfw.bin``):
    each is evaluated at every evaluation on its own pairs and folds, reported as <folder>_accuracy,
    <folder>_auc, ..."""
    eval_allow_incomplete: bool = False
    """Evaluate even if evaluation shards are missing or samples unreadable (counted in the
    metrics as eval_missing_samples); by default an incomplete evaluation set is an error."""
    flip_test: bool = True
    """Embed image and mirror image, sum, normalise (insightface's flip test)."""

    def check_inputs(self) -> None:
        self.stream.check_inputs()
        allowance = 1.0 if self.eval_allow_incomplete else 0.0
        folder = self.eval_shards or self.stream.shards
        availability = split_availability(folder, self.eval_split)
        availability.check(allowance)
        if "pairs" not in availability.manifest:  # pairs enumerated from the held-out identities
            counts = availability.manifest["splits"][self.eval_split]["labels"].values()
            self.check_held_out_pairs(sum(n * (n - 1) // 2 for n in counts), f"{folder} split {self.eval_split}")
        for benchmark in self.benchmarks:
            self.check_benchmark(benchmark)

    def check_held_out_pairs(self, matched: int, where: str) -> None:
        """Enough matched pairs among the held-out identities for the folds asked (they are drawn
        without replacement); one line saying what to change otherwise."""
        needed = self.eval_folds if self.eval_pairs == "all" else self.eval_folds * (self.eval_pairs_per_fold // 2)
        if matched < needed:
            raise ValueError(f"task.eval_pairs: {where} has {matched} matched pairs, and {self.eval_folds} folds of "
                             f"{self.eval_pairs_per_fold} pairs need {needed}; lower task.eval_pairs_per_fold or "
                             "set task.eval_pairs: all")

    def check_benchmark(self, benchmark: str, training_geometry: dict[str, Any] | None = None) -> None:
        """A published set's folder (task.benchmarks, ``facetrain evaluate --on``): its split ``test``
        there, its pairs, and its faces on the training shards' alignment template."""
        availability = split_availability(benchmark, "test")
        availability.check(1.0 if self.eval_allow_incomplete else 0.0)
        if "pairs" not in availability.manifest and "ijb" not in availability.manifest:
            raise ValueError(f"task.benchmarks: {benchmark} has no pairs (build it with shards build "
                             "insightface-bin FILE.bin, lfw-pairs, ijbb or ijbc)")
        if training_geometry is None:
            training_geometry = geometry_of(load_manifest(Path(self.stream.shards)))
        trained_on = training_geometry.get("template")
        # a template mismatch costs ~6 LFW points (insightface #1107)
        scored_on = geometry_of(availability.manifest).get("template")
        if trained_on and scored_on and trained_on != scored_on:
            raise ValueError(f"task.benchmarks: {benchmark} holds faces aligned on the {scored_on} template, "
                             f"the training shards {self.stream.shards} on {trained_on}; align both on one")

    def __post_init__(self) -> None:
        if not self.stream.shards:
            raise ValueError("stream.shards must name a shard folder")
        if self.stream.mode != "pk":
            raise ValueError("triplet mining needs stream.mode: pk")
        if self.margin <= 0 or self.class_scale <= 0 or self.class_margin < 0 or self.head_weight < 0:
            raise ValueError("margin and class_scale must be > 0, class_margin and head_weight >= 0")
        if self.eval_folds < 2 or self.eval_pairs_per_fold < 2 or self.eval_batch_size < 1:
            raise ValueError(f"eval_folds and eval_pairs_per_fold must be at least 2 and eval_batch_size at least 1, "
                             f"got {self.eval_folds}, {self.eval_pairs_per_fold}, {self.eval_batch_size}")
