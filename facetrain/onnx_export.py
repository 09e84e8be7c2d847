"""``facetrain export-onnx``: a face checkpoint's embedding network as one ONNX file, checked
against PyTorch with onnxruntime.

Only images -> unit embeddings: not the margin head, not the attention maps.  The graph comes
from torch's dynamo exporter (``torch.export``; it handles every backbone of facetrain/backbones.py
and the soft attention), with the batch dimension left dynamic.  The parity check runs a batch of
another size than the export's example, so it also shows the dynamic batch works; its figure and
the preprocessing a caller must apply go to ``<OUT>.json`` beside the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facetrain.checkpoint_model import FaceCheckpoint
from shards.augment import NORMALIZATION
from shards.files import write_json_atomic

OPSET = 18
PARITY_TOLERANCE = 1e-4
EXAMPLE_BATCH, CHECK_BATCH = 2, 3
"""Export example and parity batch sizes: different, and not 1 (torch.export specialises a size-1 dimension)."""


class ParityError(Exception):
    """onnxruntime's embeddings differ from PyTorch's by more than PARITY_TOLERANCE."""


class EmbeddingNetwork(nn.Module):
    """The attention FaceNet's first output alone."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)[0]


@torch.no_grad()
def export_onnx(checkpoint: FaceCheckpoint, network: nn.Module, path: Path) -> dict[str, Any]:
    """Write ``path`` and ``<path>.json`` (what the model expects, the parity figure); returns the
    latter's content, or raises ParityError after writing both."""
    model, size = EmbeddingNetwork(network).eval(), checkpoint.config.model.image_size
    generator = torch.Generator().manual_seed(0)
    example, check = (torch.randn(batch, 3, size, size, generator=generator) for batch in (EXAMPLE_BATCH, CHECK_BATCH))
    path.parent.mkdir(parents=True, exist_ok=True)
    # One self-contained file (external data is for models over protobuf's 2 GB; these are far below).
    torch.onnx.export(model, (example,), path, dynamo=True, external_data=False, verbose=False, opset_version=OPSET,
                      input_names=["images"], output_names=["embeddings"],
                      dynamic_shapes={"images": {0: torch.export.Dim("batch")}})
    difference = float(np.abs(onnx_embeddings(path, check.numpy()) - model(check).numpy()).max())
    augment = checkpoint.config.stream.augment
    mean, std = NORMALIZATION.get(augment.normalize, ([0.0] * 3, [255.0] * 3))  # "none": x / 255
    report = {
        "checkpoint": str(checkpoint.path), "step": checkpoint.step, "opset": OPSET,
        "input": {"name": "images", "shape": ["batch", 3, size, size], "dtype": "float32",
                  "preprocessing": f"RGB {augment.size} x {augment.size} as facetrain embed prepares images "
                                   "(shards.augment.Augmenter, train=False, on the training canvas), then "
                                   "(pixel - mean) / std per channel",
                  "canvas": checkpoint.canvas, "crop": augment.crop,
                  "mean": mean, "std": std},
        "output": {"name": "embeddings", "shape": ["batch", checkpoint.config.model.embedding_dim],
                   "l2_normalised": True},
        "flip_test": checkpoint.config.flip_test,
        "parity": {"batch": CHECK_BATCH, "export_batch": EXAMPLE_BATCH, "max_abs_diff": difference,
                   "tolerance": PARITY_TOLERANCE},
    }
    write_json_atomic(path.with_name(path.name + ".json"), report, indent=2)
    if not difference <= PARITY_TOLERANCE:  # NaN fails too
        raise ParityError(f"export-onnx: onnxruntime's embeddings differ from PyTorch's by {difference:.3g} "
                          f"(max abs, batch of {CHECK_BATCH}), more than {PARITY_TOLERANCE}; {path} is not usable")
    return report


def onnx_embeddings(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["embeddings"], {"images": images.astype(np.float32)})[0]
