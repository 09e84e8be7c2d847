"""``train.init_from``: a new run that starts from another run's model weights (a second
training stage), with its own fresh optimizer, schedule and step count."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from launcher.errors import JobError
from launcher.run_dir import source_checkpoint

# DeepSpeed's file of the whole module (ZeRO stages 0-2 keep full weights in it).
MODEL_STATES = "mp_rank_00_model_states.pt"


def load_initial_weights(model: nn.Module, path: str | Path, new_keys: tuple[str, ...]) -> Path:
    """Copy the weights of ``path``'s checkpoint into ``model``; every key must match in name and
    shape, except model keys under a ``new_keys`` prefix, which may be absent from the source."""
    checkpoint = source_checkpoint(path)
    states = checkpoint / MODEL_STATES
    if not states.is_file():
        raise JobError(f"train.init_from: {checkpoint} has no {MODEL_STATES} (not a DeepSpeed checkpoint of "
                       "this framework?)")
    source = torch.load(states, map_location="cpu", weights_only=False)["module"]
    target = model.state_dict()
    unexpected = sorted(set(source) - set(target))
    missing = sorted(k for k in set(target) - set(source) if not k.startswith(new_keys))
    reshaped = sorted(k for k in set(source) & set(target) if source[k].shape != target[k].shape)
    problems = [f"{what}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                for what, keys in (("in the checkpoint but not in this model", unexpected),
                                   ("in this model but not in the checkpoint", missing),
                                   ("of another shape", reshaped)) if keys]
    if problems:
        raise JobError(f"train.init_from: {states} does not fit this model; keys " + "; keys ".join(problems)
                       + ("" if new_keys else " (new parts of the model: list their prefixes in train.init_new_keys)"))
    model.load_state_dict(source, strict=False)
    return checkpoint
