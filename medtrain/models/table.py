"""The medical track's model table: one explicit dict from name to builder (DESIGN.md, "Task").

Every model takes 3-channel images (``to_three_channels`` for greyscale) and returns ``(logits, attention)``;
``attention_heatmap(attention)`` gives the one map per image the task overlays.  ``flavour="cpu"`` is the same
code made small, for demos and tests at 64 px.  Weights come only from the local file ``pretrained_path``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from medtrain.models.base import MedicalModel
from medtrain.models.densenet import build_densenet201, build_densenet201_soft_attention
from medtrain.models.patchconvnet import build_patchconvnet_s60
from medtrain.models.resnet import build_resnet50
from medtrain.models.weights import load_pretrained

MODELS: dict[str, Callable[..., MedicalModel]] = {
    "densenet201": build_densenet201,
    "densenet201_soft_attention": build_densenet201_soft_attention,
    "patchconvnet_s60": build_patchconvnet_s60,
    "resnet50": build_resnet50,
}
FLAVOURS = ("full", "cpu")


def model_options(name: str) -> tuple[str, ...]:
    """The keyword options ``build_model`` accepts for ``name``."""
    parameters = inspect.signature(MODELS[name]).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def build_model(
    name: str, num_classes: int, flavour: str = "full", pretrained_path: str = "", **options: object
) -> MedicalModel:
    """``name`` from ``MODELS``; ``options`` the builder's keyword options (``model_options(name)``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the table has: {', '.join(MODELS)}")
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r} for {name}; choose from: {', '.join(FLAVOURS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    unknown = sorted(set(options) - set(model_options(name)))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model {name}; "
            f"allowed: {', '.join(model_options(name)) or 'none'}"
        )
    model = MODELS[name](num_classes, flavour, **options)
    if pretrained_path:
        load_pretrained(model, Path(pretrained_path))
    return model
