"""Medical image classification on the shared engine: one task, models from an explicit table.

Training: shuffled (optionally class-balanced) batches from the shard reader, a model of
medtrain.models (DenseNet201 ± Soft Attention, PatchConvNet-S60, ResNet-50) and categorical
cross-entropy (optionally class-weighted).  Evaluation: every rank scores its share of the
evaluation split, the rows are gathered once, and rank 0 computes the clinical metrics
(medtrain/metrics.py: accuracy, balanced accuracy, precision/recall/F1, one-vs-rest AUC, κ,
calibration, each with a bootstrap 95 % interval), per patient if asked, writes the ROC
curves, confusion matrix, reliability diagram and attention overlays beside results.json, and
the whole result as clinical/stepNNNNNNNN.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from launcher.errors import reported_as_job_error
from launcher.runtime.dist import DistInfo, all_gather_object, broadcast_object
from medtrain.config import MedicalClassificationConfig
from medtrain.metrics import aggregate_by_patient, clinical_metrics
from medtrain.models import build_model, model_options
from medtrain.overlays import attention_overlays, parse_idc_name, prediction_title, slide_mosaic
from medtrain.plots import format_table, write_plots
from shards.augment import normalize_batch
from shards.eval_reader import eval_loader, samples_not_read
from shards.files import write_text_atomic
from shards.loader import StreamLoader
from shards.manifest import ManifestError, load_manifest

SETUP_ERRORS = (ManifestError, FileNotFoundError, ValueError)
"""A missing shard folder or weights file, a dataset the config cannot use: one line, no trace."""


class MedicalClassificationTask:
    def __init__(self, config: MedicalClassificationConfig, dist: DistInfo):
        self.config, self.dist = config, dist
        self.micro_batch_size = config.stream.batch_samples
        self.eval_shards = config.eval_shards or config.stream.shards
        with reported_as_job_error(*SETUP_ERRORS):
            config.check_inputs()
            manifest = load_manifest(Path(config.stream.shards))
            evaluation = load_manifest(Path(self.eval_shards))
        # how the data was split, for every result to cite (the build chose it, the manifest says it)
        self.data = {"training": {"shards": config.stream.shards, "split": config.stream.split,
                                  "split_method": manifest.get("split_method")},
                     "evaluation": {"shards": self.eval_shards, "split": config.eval_split,
                                    "split_method": evaluation.get("split_method"),
                                    "class_ratio": evaluation["splits"][config.eval_split].get("class_ratio")}}
        labels = sorted(manifest["labels"].items(), key=lambda item: item[1]["id"])
        self.class_names = [name for name, _ in labels]
        counts = manifest["splits"][config.stream.split]["labels"]
        self.class_weights = None
        if config.loss == "class_weighted":  # inverse frequency, mean 1 over the classes present
            present = {name: counts.get(name, 0) for name in self.class_names}
            total, classes = sum(present.values()), sum(1 for n in present.values() if n)
            self.class_weights = torch.tensor([total / (classes * n) if n else 0.0 for n in present.values()])

    def build_model(self) -> nn.Module:
        c = self.config.model
        wanted = {"image_size": self.config.stream.augment.size, "dropout": c.dropout,
                  "keras_literal": c.keras_literal, "patch_size": c.patch_size or None, "drop_path": c.drop_path}
        options = {k: v for k, v in wanted.items() if k in model_options(c.name) and v is not None}
        with reported_as_job_error(*SETUP_ERRORS):
            return build_model(c.name, len(self.class_names), c.flavour, c.pretrained_path, **options)

    def train_batches(self, position: dict[str, Any] | None) -> StreamLoader:
        with reported_as_job_error(*SETUP_ERRORS):
            return StreamLoader(self.config.stream, self.dist.rank, self.dist.world_size, position, self.dist.device)

    def _images(self, batch_images: torch.Tensor, model: nn.Module) -> torch.Tensor:
        return normalize_batch(batch_images, self.config.stream.augment, next(model.parameters()).dtype)

    def step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = batch["label"].to(self.dist.device)
        logits, _ = model(self._images(batch["image"].to(self.dist.device), model))
        weights = self.class_weights.to(logits.device) if self.class_weights is not None else None
        loss = F.cross_entropy(logits.float(), labels, weight=weights, label_smoothing=self.config.label_smoothing)
        return loss, {"accuracy": (logits.argmax(1) == labels).float().mean()}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        c = self.config
        rows, pictures, missing = self._score_split(model)
        if c.slide_mosaics:
            self._draw_slides(rows, Path(out_dir))
        if not self.dist.is_main:
            return {}  # the loop takes rank 0's metrics
        labels = np.array([r[1] for r in rows])
        probabilities = np.stack([r[2] for r in rows]).astype(np.float64)
        result = clinical_metrics(labels, probabilities, self.class_names, c.bootstrap, seed=step, ece_bins=c.ece_bins)
        out_dir = Path(out_dir)
        write_plots(result, out_dir)
        report: dict[str, Any] = {"step": step, "data": self.data, "cases": result.to_json(),
                                  "eval_missing_samples": missing}
        metrics = {k: v for k, v in result.metrics().items() if v is not None}
        # the validation loss the seeds stop on: mean cross-entropy of the true class
        metrics["loss"] = float(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, None)).mean())
        if c.patients != "none":
            with reported_as_job_error(ValueError):  # a patient whose cases disagree on the label
                patient_labels, patient_probabilities, _ = aggregate_by_patient(
                    np.array([r[3] for r in rows]), labels, probabilities, c.patients, c.patient_label)
            by_patient = clinical_metrics(patient_labels, patient_probabilities, self.class_names, c.bootstrap,
                                          seed=step, ece_bins=c.ece_bins)
            write_plots(by_patient, out_dir / "patients")
            report["patients"] = by_patient.to_json()
            metrics |= {f"patient_{k}": v for k, v in by_patient.metrics().items() if v is not None}
        if pictures:
            images, heatmaps, titles = zip(*pictures, strict=True)
            attention_overlays(torch.stack(images), torch.stack(heatmaps), list(titles), out_dir / "attention.png")
        path = out_dir / "clinical" / f"step{step:08d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(report, indent=1))
        print(f"\nclinical evaluation at step {step} ({path})\n{format_table(result)}", flush=True)
        return {**metrics, "eval_missing_samples": float(missing)}

    def _score_split(self, model: nn.Module) -> tuple[list[tuple], list[tuple], int]:
        """Every evaluation case as (index, label, probabilities, patient, key), gathered once and in
        index order on rank 0; the overlay samples (image, heat map, title); samples missing."""
        c, dist = self.config, self.dist
        loader = eval_loader(self.eval_shards, c.eval_split, dist.rank, dist.world_size, c.eval_batch_size,
                             c.stream.augment, max_missing_fraction=1.0 if c.eval_allow_incomplete else 0.0)
        total = loader.dataset.index.total
        drawn = set(np.linspace(0, total - 1, min(c.overlays, total)).round().astype(int).tolist())
        local, pictures = [], []
        for batch in loader:
            logits, attention = model(self._images(batch["image"].to(dist.device), model))
            probabilities = torch.softmax(logits.float(), 1).cpu().numpy()
            local += zip(batch["index"].tolist(), batch["label"].tolist(), probabilities, batch["group"], batch["key"],
                         strict=True)
            heatmaps = model.attention_heatmap(attention) if attention else None  # plain models: none to draw
            for row, sample in enumerate(batch["index"].tolist()):
                if sample in drawn and heatmaps is not None:
                    label, guess = int(batch["label"][row]), int(probabilities[row].argmax())
                    title = prediction_title(self.class_names[label], self.class_names[guess],
                                             float(probabilities[row][guess]))
                    pictures.append((sample, batch["image"][row], heatmaps[row].float().cpu(), title))
        gathered = all_gather_object((local, pictures), dist)
        rows = sorted((row for part, _ in gathered for row in part), key=lambda row: row[0])
        pictures = [p[1:] for p in sorted((p for _, part in gathered for p in part), key=lambda p: p[0])]
        missing = samples_not_read(loader, len(rows), c.eval_allow_incomplete)
        return rows, pictures, missing

    def _draw_slides(self, rows: list[tuple], out_dir: Path) -> None:
        """Rank 0 picks the patients, every rank decodes their patches from its shards again (the
        scores are known), rank 0 draws ``slides/<patient>.png``."""
        c, dist = self.config, self.dist
        patients = broadcast_object(sorted({row[3] for row in rows})[: c.slide_mosaics], dist)
        scores = {row[0]: (float(row[2][-1]), row[1]) for row in rows}  # IDC probability (the last class), label
        loader = eval_loader(self.eval_shards, c.eval_split, dist.rank, dist.world_size, c.eval_batch_size,
                             c.stream.augment, max_missing_fraction=1.0)
        local = []
        for batch in loader:
            for row, (patient, meta) in enumerate(zip(batch["group"], batch["meta"], strict=True)):
                if patient in patients:
                    with reported_as_job_error(ValueError):
                        _, x, y, _ = parse_idc_name(meta["source"])
                    local.append((patient, x, y, batch["image"][row].permute(1, 2, 0).numpy(),
                                  batch["index"][row].item()))
        gathered = [patch for part in all_gather_object(local, dist) for patch in part]
        if dist.is_main:
            for patient in patients:
                mine = [p for p in gathered if p[0] == patient and p[4] in scores]
                slide_mosaic([(x, y, image) for _, x, y, image, _ in mine], [scores[p[4]][0] for p in mine],
                             [scores[p[4]][1] for p in mine], patient, out_dir / "slides" / f"{patient}.png")

    def summary(self) -> dict[str, Any]:
        return self.data

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
