"""``facetrain embed``: a face checkpoint's embeddings of every image in a folder, and the
nearest identities of a gallery.

Images are found recursively and prepared as evaluation prepares shard samples: the evaluation
augmenter (``Augmenter(train=False)`` with the checkpoint's window and its training canvas, faces
at the training scale), ``normalize_batch``, and the flip test when the checkpoint's config has it.
A file PIL cannot decode (any other file, too) is skipped and listed with the reason.  A gallery is
a folder of ``<identity>/<images>``: each identity is the normalised mean of its images'
embeddings, and a query's nearest identities are those of highest cosine similarity.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from facetrain.checkpoint_model import FaceCheckpoint
from facetrain.face_task import evaluation_embeddings
from facetrain.model import AttentionFaceNet
from launcher.errors import JobError
from shards.augment import Augmenter, stack_images

JPEG_START = b"\xff\xd8"


@dataclass(frozen=True)
class EmbeddedFolder:
    paths: list[str]
    """Row i's image, relative to the folder."""
    embeddings: np.ndarray
    """float32 (N, D), unit rows."""
    skipped: list[dict[str, str]]
    """Every file that was not embedded: path and reason."""


@torch.no_grad()
def embed_folder(checkpoint: FaceCheckpoint, network: AttentionFaceNet, folder: Path,
                 batch_size: int) -> EmbeddedFolder:
    augment = checkpoint.config.stream.augment
    augmenter = Augmenter(augment, train=False, canvas=checkpoint.canvas)
    rng = np.random.default_rng(0)  # evaluation draws nothing
    paths, skipped, batches, pending = [], [], [], []
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    for path in tqdm(files, desc=f"embedding {folder}", unit="image", disable=None):
        relative, data = str(path.relative_to(folder)), path.read_bytes()
        image = np.empty((augment.size, augment.size, 3), dtype=np.uint8)
        try:  # the field's name picks the augmenter's JPEG fast path; PIL decodes anything under "png"
            augmenter({"jpg" if data.startswith(JPEG_START) else "png": data}, rng, image)
        except ValueError as exc:
            skipped.append({"path": relative, "reason": str(exc)})
            continue
        paths.append(relative)
        pending.append(image)
        if len(pending) == batch_size:
            batches.append(embed_images(checkpoint, network, stack_images(pending)))
            pending = []
    if pending:
        batches.append(embed_images(checkpoint, network, stack_images(pending)))
    if not paths:
        raise JobError(f"embed: no image in {folder} could be decoded ({len(skipped)} files skipped)")
    return EmbeddedFolder(paths, torch.cat(batches).numpy(), skipped)


def embed_images(checkpoint: FaceCheckpoint, network: AttentionFaceNet, images: torch.Tensor) -> torch.Tensor:
    """float32 unit embeddings of uint8 (B, 3, H, W) images; with the checkpoint's flip test, of image
    + mirror (as the face task evaluates)."""
    return evaluation_embeddings(network, images, checkpoint.config.stream.augment, checkpoint.config.flip_test).float()


def identity_centres(gallery: EmbeddedFolder) -> tuple[list[str], np.ndarray]:
    """(identities, their unit mean embeddings); an image's identity is its first folder."""
    identities = sorted({Path(path).parts[0] for path in gallery.paths if len(Path(path).parts) > 1})
    if not identities:
        raise JobError("embed: the gallery holds no <identity>/<image> files")
    row = {identity: i for i, identity in enumerate(identities)}
    sums = np.zeros((len(identities), gallery.embeddings.shape[1]), np.float64)
    for path, embedding in zip(gallery.paths, gallery.embeddings, strict=True):
        if len(Path(path).parts) > 1:
            sums[row[Path(path).parts[0]]] += embedding
    return identities, (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)


def nearest_identities(queries: np.ndarray, centres: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine similarities) of each query's ``top`` nearest centres, nearest first."""
    similarities = queries @ centres.T
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :top]
    return order, np.take_along_axis(similarities, order, axis=1)


def write_nearest(path: Path, queries: EmbeddedFolder, gallery: EmbeddedFolder, top: int) -> dict:
    """nearest.csv (query, rank from 1 = nearest, identity, cosine); returns the gallery's entry of the index."""
    identities, centres = identity_centres(gallery)
    order, similarities = nearest_identities(queries.embeddings, centres, top)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "rank", "identity", "cosine"])
        for query, indices, values in zip(queries.paths, order, similarities, strict=True):
            writer.writerows([query, rank, identities[i], f"{value:.6f}"]
                             for rank, (i, value) in enumerate(zip(indices, values, strict=True), 1))
    loose = [{"path": p, "reason": "not in an <identity>/ folder"} for p in gallery.paths if len(Path(p).parts) == 1]
    return {"identities": len(identities), "images": len(gallery.paths) - len(loose),
            "skipped": gallery.skipped + loose}
