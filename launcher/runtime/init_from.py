"""``train.init_from``: a new run that starts from another run's model weights (a second
training stage), with its own fresh optimizer, schedule and step count."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import yaml
from torch import nn

from launcher.errors import JobError
from launcher.run_dir import source_checkpoint

log = logging.getLogger(__name__)

# DeepSpeed's file of the whole module.  It holds the full fp32 weights only for ZeRO-0 in fp32;
# otherwise the fp32 master weights live in the optimizer partitions.
MODEL_STATES = "mp_rank_00_model_states.pt"


def fp32_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The source run's fp32 weights (and buffers), whatever its ZeRO stage and precision."""
    deepspeed_section = yaml.safe_load((checkpoint / "config.yaml").read_text()).get("deepspeed", {})
    if deepspeed_section.get("zero_stage", 0) > 0:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint.parent), tag=checkpoint.name)
    states = torch.load(checkpoint / MODEL_STATES, map_location="cpu", weights_only=False)
    module = states["module"]
    if deepspeed_section.get("precision", "fp32") == "fp32":
        return module
    return {**module, **_fp32_masters(module, states)}


def _fp32_masters(module: dict[str, torch.Tensor], states: dict) -> dict[str, torch.Tensor]:
    """ZeRO-0 in bf16/fp16 keeps the fp32 master weights as the optimizer's ``fp32_groups``, in the
    order of launcher.runtime.optim.parameter_groups: trainable tensors of 2+ dimensions, then the
    rest, each in the module's order."""
    buffers = set(states.get("buffer_names") or ())
    frozen = set(states.get("frozen_param_shapes") or ())
    trainable = [k for k in module if k not in buffers and k not in frozen]
    names = [k for k in trainable if module[k].ndim >= 2] + [k for k in trainable if module[k].ndim < 2]
    masters = [t for group in states["optimizer"]["fp32_groups"] for t in group]
    if len(masters) != len(names) or any(module[k].shape != t.shape for k, t in zip(names, masters, strict=False)):
        raise JobError("train.init_from: cannot match the checkpoint's fp32 master weights to its parameters; "
                       "start the source run with deepspeed.zero_stage >= 1 or precision fp32")
    return dict(zip(names, masters, strict=True))


def load_initial_weights(model: nn.Module, path: str | Path, new_keys: tuple[str, ...],
                         skipped_keys: tuple[str, ...]) -> Path:
    """Copy the weights of ``path``'s checkpoint into ``model``.  Every key must match in name and
    shape, except model keys under a ``new_keys`` prefix (absent from the source: a new branch) and
    source keys under a ``skipped_keys`` prefix (left out: a head this stage no longer has)."""
    checkpoint = source_checkpoint(path)
    if not (checkpoint / MODEL_STATES).is_file():
        raise JobError(f"train.init_from: {checkpoint} has no {MODEL_STATES} (not a DeepSpeed checkpoint of "
                       "this framework?)")
    source = {k: v for k, v in fp32_weights(checkpoint).items() if not k.startswith(skipped_keys)}
    target = model.state_dict()
    unexpected = sorted(set(source) - set(target))
    missing = sorted(k for k in set(target) - set(source) if not k.startswith(new_keys))
    reshaped = sorted(k for k in set(source) & set(target) if source[k].shape != target[k].shape)
    problems = [f"{what}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                for what, keys in (("in the checkpoint but not in this model", unexpected),
                                   ("in this model but not in the checkpoint", missing),
                                   ("of another shape", reshaped)) if keys]
    if problems:
        raise JobError(f"train.init_from: {checkpoint} does not fit this model; keys " + "; keys ".join(problems)
                       + " (a new part of the model: list its prefix in train.init_new_keys; a part this stage "
                       "drops: in train.init_skip_keys)")
    model.load_state_dict(source, strict=False)
    return checkpoint
