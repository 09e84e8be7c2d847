"""Checkpoint bookkeeping on disk: which tags count as complete, and retention."""

import torch

from launcher.checkpoint import COMPLETE_MARKER, Checkpointer, complete_tags, existing_checkpoint_error
from launcher.dist import DistInfo


def make(directory, step, complete=True):
    tag = directory / f"step{step:08d}"
    tag.mkdir(parents=True)
    if complete:
        (tag / COMPLETE_MARKER).write_text("{}")


def test_only_marked_checkpoints_count_and_keep_last_prunes_the_oldest(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for step in (10, 20, 30, 40):
        make(checkpoints, step)
    make(checkpoints, 50, complete=False)  # killed before it was marked complete
    (checkpoints / "step00000060.partial").mkdir()
    assert complete_tags(checkpoints) == ["step00000010", "step00000020", "step00000030", "step00000040"]
    Checkpointer(checkpoints, keep_last=2, dist=DistInfo(0, 1, 0, torch.device("cpu")))._prune()
    assert complete_tags(checkpoints) == ["step00000030", "step00000040"]
    assert "already holds checkpoint step00000040; pass --resume" in str(existing_checkpoint_error(tmp_path))


def test_a_run_dir_without_complete_checkpoints_needs_nothing(tmp_path):
    make(tmp_path / "checkpoints", 10, complete=False)
    assert existing_checkpoint_error(tmp_path) is None
