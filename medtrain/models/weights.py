"""Weights from a local file only (REFERENCE.md §6½ decision 6: nothing is downloaded on these machines).

A file may be a torchvision or timm state dict of the full backbone (``.pt``/``.pth`` or ``.safetensors``;
``state_dict``/``model`` wrappers and ``module.`` prefixes removed by timm's reader, as in
facetrain/backbones.py) or one saved from a model of this table.  The classifier loads only where its shape
fits: a file for another number of classes leaves the new head as initialised.  Every other difference
between file and model is an error naming the file.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from medtrain.models.base import MedicalModel

log = logging.getLogger(__name__)

# torchvision's DenseNet release files predate its module names: "denselayer1.norm.1.weight" is now
# "denselayer1.norm1.weight" (torchvision's own loader rewrites them the same way).
_LEGACY_DENSE_LAYER = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def load_pretrained(model: MedicalModel, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {path} do not exist (this machine cannot download them: copy the file there, "
            "or leave pretrained_path empty)"
        )
    from timm.models import load_state_dict

    state = {_LEGACY_DENSE_LAYER.sub(r"\1\2.", key): value for key, value in load_state_dict(str(path)).items()}
    own = model.state_dict()
    head = [key for key in own if _under(key, (model.head_name,))]
    if not all(key in state and state[key].shape == own[key].shape for key in head):
        file_head = {key: tuple(value.shape) for key, value in state.items() if _under(key, (model.head_name,))}
        log.info(
            "%s: classifier %s not loaded (the file's: %s); it starts as initialised",
            path,
            model.head_name,
            file_head or "none",
        )
        state = {key: value for key, value in state.items() if not _under(key, (model.head_name,))}
    optional = (model.head_name, *model.added_modules)
    mismatches = {
        # old BatchNorm files have no step counters; BatchNorm starts them at 0
        "missing": [
            key
            for key in own
            if key not in state and not _under(key, optional) and not key.endswith("num_batches_tracked")
        ],
        "unexpected": [key for key in state if key not in own and not _under(key, model.cut_modules)],
        "other shapes": [
            f"{key} {tuple(state[key].shape)} for {tuple(value.shape)}"
            for key, value in own.items()
            if key in state and state[key].shape != value.shape
        ],
    }
    if any(mismatches.values()):
        found = "; ".join(
            f"{kind} ({len(keys)}): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
            for kind, keys in mismatches.items()
            if keys
        )
        raise ValueError(f"{path} does not fit {type(model).__name__}: {found}")
    with torch.no_grad():
        model.load_state_dict({key: value for key, value in state.items() if key in own}, strict=False)


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return key.startswith(tuple(f"{prefix}." for prefix in prefixes))
