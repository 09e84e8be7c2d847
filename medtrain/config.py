"""The medical_classification task's config section (medtrain/task.py is the task).  No torch
here: ``launch`` validates job configs before any process starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from launcher.config.schema import TaskConfig
from shards.availability import split_availability
from shards.stream_config import StreamConfig

ModelName = Literal["densenet201", "densenet201_soft_attention", "patchconvnet_s60", "resnet50"]
"""The names of medtrain.models.table.MODELS (kept equal by tests/unit/test_med_config.py)."""


@dataclass(frozen=True)
class MedModelConfig:
    name: ModelName = "densenet201_soft_attention"
    flavour: Literal["full", "cpu"] = "full"
    """full: the published sizes; cpu: the same code made small (demo, tests)."""
    pretrained_path: str = ""
    """A local torchvision/timm state dict (ImageNet weights); its classifier is replaced. Empty: random init."""
    dropout: float = 0.5
    """DenseNet-SA head's dropout (seed §III-B)."""
    keras_literal: bool = False
    """DenseNet-SA: the official Keras layer's exact behaviour instead of the paper's formula (REFERENCE §1.2)."""
    patch_size: int = 0
    """PatchConvNet: the stem's total downsampling (16: 14×14 patches at 224 px; 8: 8×8 at 64 px); 0: the
    flavour's default."""
    drop_path: float = 0.0
    """PatchConvNet: stochastic depth."""

    def __post_init__(self) -> None:
        if not 0 <= self.dropout < 1 or not 0 <= self.drop_path < 1:
            raise ValueError(f"dropout and drop_path must be in [0, 1), got {self.dropout} and {self.drop_path}")
        if self.patch_size and (self.patch_size & (self.patch_size - 1) or not 1 <= self.patch_size <= 16):
            raise ValueError(f"patch_size must be 0 or a power of 2 up to 16, got {self.patch_size}")


@dataclass(frozen=True)
class MedicalClassificationConfig(TaskConfig):
    stream: StreamConfig
    """The training reader in shuffle mode; class_balance: oversample | undersample as in the seeds."""
    model: MedModelConfig = field(default_factory=MedModelConfig)
    loss: Literal["cross_entropy", "class_weighted"] = "cross_entropy"
    """Categorical cross-entropy (the seeds), or weighted by inverse class frequency of the training split."""
    label_smoothing: float = 0.0
    eval_shards: str = ""
    """Shard folder to evaluate; empty: stream.shards."""
    eval_split: str = "val"
    eval_batch_size: int = 64
    eval_allow_incomplete: bool = False
    """Evaluate even if evaluation shards are missing or images unreadable (counted as eval_missing_samples)."""
    bootstrap: int = 1000
    """Resamples for the 95 % confidence intervals (0: none)."""
    ece_bins: int = 15
    patients: Literal["none", "mean", "max"] = "none"
    """Also score each patient from its slices/patches (the mean probability, or the highest
    positive-class one), reported as patient_* metrics."""
    patient_label: Literal["unanimous", "any_positive"] = "unanimous"
    """A patient's true label: the one all its cases share (tumour), or positive if any case is (IDC)."""
    overlays: int = 8
    """Evaluation samples drawn with their attention map at every evaluation (evenly spaced over the split)."""
    slide_mosaics: int = 0
    """IDC: the slides of this many evaluation patients (the first by id), rebuilt from the patch
    coordinates in the file names, the predicted IDC probability beside the ground truth."""

    def check_inputs(self) -> None:
        """The face task's checks, and that no patient is both trained and evaluated on (the
        evaluation set may be another build)."""
        self.stream.check_inputs()
        evaluation = split_availability(self.eval_shards or self.stream.shards, self.eval_split)
        evaluation.check(1.0 if self.eval_allow_incomplete else 0.0)
        training = split_availability(self.stream.shards, self.stream.split)
        shared = sorted(set(training.manifest["splits"][self.stream.split].get("patients", ())) &
                        set(evaluation.manifest["splits"][self.eval_split].get("patients", ())))
        if shared:
            raise ValueError(f"{len(shared)} patient(s) in both the training split {self.stream.split!r} of "
                             f"{self.stream.shards} and the evaluation split {self.eval_split!r} of {evaluation.root}: "
                             f"{', '.join(shared[:5])}{' ...' if len(shared) > 5 else ''}; the evaluation would "
                             "measure memory, not diagnosis")

    def __post_init__(self) -> None:
        if not self.stream.shards:
            raise ValueError("stream.shards must name a shard folder")
        if self.stream.mode != "shuffle":
            raise ValueError("classification reads stream.mode: shuffle (P×K batches are for metric learning)")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.eval_batch_size < 1 or self.ece_bins < 1 or min(self.bootstrap, self.overlays, self.slide_mosaics) < 0:
            raise ValueError(f"eval_batch_size and ece_bins must be at least 1, bootstrap, overlays and slide_mosaics "
                             f"at least 0, got {self.eval_batch_size}, {self.ece_bins}, {self.bootstrap}, "
                             f"{self.overlays}, {self.slide_mosaics}")
