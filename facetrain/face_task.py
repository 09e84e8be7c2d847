"""Face embeddings with online triplet mining across ranks, judged by verification.

Training: P×K batches from the shard reader, the attention FaceNet, the triplet loss with
each rank's anchors mining the global batch (facetrain/triplet.py), optionally with (or
replaced by) an ArcFace or CosFace head (facetrain/margin_heads.py).  Evaluation: every rank
embeds its share of the evaluation split (optionally with the flipped image added), the
embeddings are gathered once, and pairs are scored with the LFW protocol
(facetrain/verification.py): the shard folder's own pairs when it has them, otherwise pairs
enumerated without replacement from the held-out identities (shards/pairs.py).  Published sets
(task.benchmarks) are scored each on its own pairs, IJB-B/C on their templates (facetrain/ijb.py).
A ROC plot of every evaluation since step 0, labelled by step, is written to roc.png in the run
directory.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from facetrain.config import FaceTripletConfig
from facetrain.ijb import evaluate_ijb_folder
from facetrain.margin_heads import MarginHead
from facetrain.model import AttentionFaceNet
from facetrain.triplet import distributed_triplet_loss
from facetrain.verification import VerificationResult, evaluate_pairs, plot_roc
from launcher.errors import reported_as_job_error
from launcher.runtime.dist import DistInfo
from shards.augment import normalize_batch
from shards.eval_reader import eval_loader, samples_not_read
from shards.geometry import geometry_of
from shards.loader import StreamLoader
from shards.manifest import ManifestError, load_manifest
from shards.pairs import all_pairs, fold_pairs
from shards.stream_config import AugmentConfig

# A shard folder or weights file that is missing, or a dataset that cannot fill a batch: the
# user's to fix, so one clear line rather than a stack trace.
SETUP_ERRORS = (ManifestError, FileNotFoundError, ValueError)


class FaceEmbeddingModel(nn.Module):
    """The attention FaceNet and, for margin objectives, its class-centre head, in one module so
    the engine sees (and shards, and checkpoints) every trained parameter."""

    def __init__(self, network: AttentionFaceNet, head: MarginHead | None):
        super().__init__()
        self.network, self.head = network, head

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        """(embeddings, attention maps, head loss or None)."""
        embeddings, maps = self.network(images)
        head_loss = self.head(embeddings, labels) if self.head is not None and labels is not None else None
        return embeddings, maps, head_loss


class FaceTripletTask:
    def __init__(self, config: FaceTripletConfig, dist: DistInfo, geometry: dict[str, Any] | None = None):
        """``geometry``: the training shards' face geometry as a checkpoint recorded it (facetrain
        evaluate); None reads it from their manifest."""
        self.config, self.dist = config, dist
        self.micro_batch_size = config.stream.batch_samples
        self.history: dict[int, VerificationResult] = {}
        """Every evaluation's result by step (checkpointed: roc.png keeps every curve after a resume)."""
        self.eval_shards = config.eval_shards or config.stream.shards
        self.triplet = config.objective.startswith("triplet")
        self.head_kind = config.objective.rpartition("+")[2] if config.objective != "triplet" else None
        self.eval_allowance = 1.0 if config.eval_allow_incomplete else 0.0
        with reported_as_job_error(*SETUP_ERRORS):  # missing evaluation shards: now, not after training
            config.check_inputs()
            if geometry is None:
                geometry = geometry_of(load_manifest(Path(config.stream.shards)))
        self.geometry = geometry
        self.canvas = geometry.get("canvas")

    def build_model(self) -> nn.Module:
        c = self.config
        head = None
        with reported_as_job_error(*SETUP_ERRORS):
            if self.head_kind:
                classes = len(load_manifest(Path(c.stream.shards))["labels"])
                head = MarginHead(classes, c.model.embedding_dim, self.head_kind, c.class_scale, c.class_margin or None)
            return FaceEmbeddingModel(AttentionFaceNet(c.model), head)

    def train_batches(self, position: dict[str, Any] | None) -> StreamLoader:
        with reported_as_job_error(*SETUP_ERRORS):
            return StreamLoader(self.config.stream, self.dist.rank, self.dist.world_size, position, self.dist.device)

    def _images(self, batch_images: torch.Tensor, model: nn.Module) -> torch.Tensor:
        dtype = next(model.parameters()).dtype
        return normalize_batch(batch_images, self.config.stream.augment, dtype)

    def step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        labels = batch["label"]
        embeddings, _, head_loss = model(self._images(batch["image"], model), labels if self.head_kind else None)
        loss, logged = embeddings.new_zeros((), dtype=torch.float32), {}
        if self.triplet:
            loss, stats = distributed_triplet_loss(embeddings.float(), labels, self.dist, c.margin, c.mining, c.squared)
            logged = {"active_triplets": stats.active_fraction, "d_ap": stats.mean_positive_distance,
                      "d_an": stats.mean_negative_distance, "hardest_d_an": stats.hardest_negative_distance}
        if head_loss is not None:
            loss = loss + c.head_weight * head_loss
            logged[f"{self.head_kind}_loss"] = head_loss.detach()
        return loss, logged

    @torch.no_grad()
    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        c = self.config
        keys, labels, embeddings, missing = self.embed_split(model, self.eval_shards, c.eval_split)
        result = verify(embeddings, lfw_pairs(self.eval_shards, keys) or self.held_out_pairs(labels))
        self.history[step] = result
        if self.dist.is_main:
            plot_roc({f"step {s}": self.history[s] for s in sorted(self.history)}, Path(out_dir) / "roc.png")
        metrics = {**headline(result, "verification"), "eval_missing_samples": float(missing)}
        for benchmark in c.benchmarks:  # published sets: their own pairs and folds, or IJB templates
            keys, _, embeddings, missing = self.embed_split(model, benchmark, "test")
            name = Path(benchmark).name
            if "ijb" in load_manifest(Path(benchmark)):
                metrics |= evaluate_ijb_folder(benchmark, keys, embeddings, name)
            else:
                metrics |= headline(verify(embeddings, lfw_pairs(benchmark, keys)), name)
            metrics[f"{name}_missing_samples"] = float(missing)
        return metrics

    def held_out_pairs(self, labels: np.ndarray):
        """Pairs of the held-out identities, enumerated without replacement (shards/pairs.py): LFW-style
        folds of eval_pairs_per_fold, or every matched pair and as many mismatched (eval_pairs: all)."""
        c = self.config
        with reported_as_job_error(ValueError):  # fewer held-out images than the manifest said (incomplete set)
            c.check_held_out_pairs(sum(n * (n - 1) // 2 for n in np.unique(labels, return_counts=True)[1]),
                                   f"{self.eval_shards} split {c.eval_split} as read")
            if c.eval_pairs == "all":
                return all_pairs(labels, folds=c.eval_folds)
            return fold_pairs(labels, c.eval_folds, c.eval_pairs_per_fold)

    def summary(self) -> dict[str, Any]:
        c = self.config
        training, evaluation = load_manifest(Path(c.stream.shards)), load_manifest(Path(self.eval_shards))
        return {"training": {"shards": c.stream.shards, "split": c.stream.split,
                             "split_method": training.get("split_method"), "geometry": training.get("geometry")},
                "evaluation": {"shards": self.eval_shards, "split": c.eval_split,
                               "split_method": evaluation.get("split_method"), "geometry": evaluation.get("geometry"),
                               "canvas": self.canvas, "window": c.stream.augment.size},
                "benchmarks": {Path(b).name: {"shards": b, "geometry": load_manifest(Path(b)).get("geometry")}
                               for b in c.benchmarks}}

    def state_dict(self) -> dict[str, Any]:
        # the geometry too: a checkpoint used without its training shards still sees faces at their scale
        return {"verification": {step: asdict(result) for step, result in self.history.items()},
                "geometry": self.geometry}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = {step: VerificationResult(**result) for step, result in state.get("verification", {}).items()}

    @torch.no_grad()
    def embed_split(self, model: nn.Module, shards: str, split: str):
        """(keys, labels, embeddings, samples missing) of a whole split in index order, on every
        rank (one gather)."""
        c, dist = self.config, self.dist
        local: list[tuple] = []
        loader = eval_loader(shards, split, dist.rank, dist.world_size, c.eval_batch_size,
                             c.stream.augment, max_missing_fraction=self.eval_allowance, canvas=self.canvas)
        for batch in loader:
            embedding = evaluation_embeddings(model, batch["image"].to(dist.device), c.stream.augment, c.flip_test)
            local += zip(batch["index"].tolist(), batch["key"], batch["label"].tolist(),
                         embedding.float().cpu().numpy(), strict=True)
        gathered = [None] * dist.world_size
        if dist.world_size > 1:
            torch_dist.all_gather_object(gathered, local)
        else:
            gathered = [local]
        rows = sorted((row for part in gathered for row in part), key=lambda row: row[0])
        missing = samples_not_read(loader, len(rows), c.eval_allow_incomplete)
        _, keys, labels, embeddings = zip(*rows, strict=True)
        return list(keys), np.array(labels), np.stack(embeddings).astype(np.float64), missing


def evaluation_embeddings(model: nn.Module, images: torch.Tensor, augment: AugmentConfig,
                          flip_test: bool) -> torch.Tensor:
    """Unit embeddings of uint8 (B, 3, H, W) images as every evaluation computes them: normalised as
    in training; with the flip test, image and mirror image embedded, summed, normalised (insightface)."""
    images = normalize_batch(images, augment, next(model.parameters()).dtype)
    embeddings = model(images)[0]
    if flip_test:
        embeddings = F.normalize(embeddings + model(images.flip(-1))[0], dim=1)
    return embeddings


def verify(embeddings: np.ndarray, pairs: tuple) -> VerificationResult:
    """The LFW protocol on squared distances of the pairs (a, b, same, folds), as row indices."""
    a, b, same, folds = pairs
    return evaluate_pairs(((embeddings[a] - embeddings[b]) ** 2).sum(1), same, folds)


def headline(result: VerificationResult, prefix: str) -> dict[str, float]:
    """The figures people report (LFW accuracy, VAL@FAR, AUC, EER, TAR at FAR 1e-3..1e-5 where the
    pair count reaches that FAR), with the pair count."""
    left_out = ("val_std", "far_target", "folds")  # settings and spreads: in roc.png and the code
    return {f"{prefix}_{k}": v for k, v in result.metrics().items() if v is not None and k not in left_out}


def lfw_pairs(shards: str, keys: list[str]):
    """The shard folder's own pairs (an ``lfw-pairs`` build), as row indices; None without."""
    manifest = load_manifest(Path(shards))
    if "pairs" not in manifest:
        return None
    row = {key: i for i, key in enumerate(keys)}
    usable = [p for p in manifest["pairs"] if p["a"] in row and p["b"] in row]
    return (np.array([row[p["a"]] for p in usable]), np.array([row[p["b"]] for p in usable]),
            np.array([p["same"] for p in usable]), np.array([p["fold"] for p in usable]))
