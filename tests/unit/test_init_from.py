"""train.init_from on checkpoint files written the way DeepSpeed writes them: which weights are
taken (fp32 masters, not the bf16 copy), and which key differences are allowed."""

import pytest
import torch
import yaml
from torch import nn

from launcher.errors import JobError
from launcher.run_dir import RunDir
from launcher.runtime.init_from import MODEL_STATES, load_initial_weights


class Small(nn.Module):
    def __init__(self, head: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)  # a buffer-holding layer: buffers are not optimizer parameters
        self.head = nn.Linear(4, 2) if head else None


def zero0_bf16_checkpoint(tmp_path, model: nn.Module) -> tuple[RunDir, dict[str, torch.Tensor]]:
    """A complete ZeRO-0 bf16 checkpoint: the module in bf16, fp32 masters in parameter_groups order."""
    run_dir = RunDir(tmp_path / "stage1")
    tag = RunDir.tag_for(5)
    run_dir.checkpoint(tag).mkdir(parents=True)
    run_dir.marker(tag).write_text("{}")
    run_dir.checkpoint_config(tag).write_text(yaml.safe_dump({"deepspeed": {"zero_stage": 0, "precision": "bf16"}}))
    masters = {k: torch.randn_like(v, dtype=torch.float32) for k, v in model.named_parameters()}
    module = {k: v.to(torch.bfloat16) for k, v in {**model.state_dict(), **masters}.items()}
    groups = [[t for t in masters.values() if t.ndim >= 2], [t for t in masters.values() if t.ndim < 2]]
    buffers = [k for k, _ in model.named_buffers()]
    torch.save({"module": module, "buffer_names": buffers, "frozen_param_shapes": None,
                "optimizer": {"fp32_groups": groups}}, run_dir.checkpoint(tag) / MODEL_STATES)
    return run_dir, masters


def test_a_bf16_source_gives_its_fp32_master_weights_not_the_rounded_copy(tmp_path):
    run_dir, masters = zero0_bf16_checkpoint(tmp_path, Small())
    target = Small()
    assert load_initial_weights(target, run_dir.root, (), ()) == run_dir.checkpoint("step00000005")
    for name, value in target.named_parameters():
        assert torch.equal(value.detach(), masters[name]), name


def test_new_and_dropped_parts_must_be_declared(tmp_path):
    run_dir, _ = zero0_bf16_checkpoint(tmp_path, Small(head=True))
    with pytest.raises(JobError, match=r"keys in the checkpoint but not in this model: head\.bias, head\.weight"):
        load_initial_weights(Small(), run_dir.root, (), ())
    load_initial_weights(Small(), run_dir.root, (), ("head.",))  # stage 2 drops the head

    run_dir, _ = zero0_bf16_checkpoint(tmp_path / "b", Small())
    with pytest.raises(JobError, match=r"keys in this model but not in the checkpoint: head\.bias, head\.weight"):
        load_initial_weights(Small(head=True), run_dir.root, (), ())
    load_initial_weights(Small(head=True), run_dir.root, ("head.",), ())  # stage 2 adds it


def test_masters_that_do_not_match_the_parameters_are_refused(tmp_path):
    run_dir, _ = zero0_bf16_checkpoint(tmp_path, Small())
    path = run_dir.checkpoint("step00000005") / MODEL_STATES
    states = torch.load(path, weights_only=False)
    states["optimizer"]["fp32_groups"][0].pop()
    torch.save(states, path)
    with pytest.raises(JobError, match="cannot match the checkpoint's fp32 master weights"):
        load_initial_weights(Small(), run_dir.root, (), ())
