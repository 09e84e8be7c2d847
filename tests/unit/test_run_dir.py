"""The run directory's bookkeeping on disk: which checkpoints count as complete, retention
(with the best checkpoint spared), and the checks made before a run starts."""

import json

import pytest
import torch

from launcher.config.schema import CheckpointConfig
from launcher.errors import JobError
from launcher.run_dir import RunDir, source_checkpoint
from launcher.runtime.checkpoint import Checkpointer
from launcher.runtime.dist import DistInfo


def make(run_dir: RunDir, step: int, complete: bool = True) -> str:
    tag = RunDir.tag_for(step)
    run_dir.checkpoint(tag).mkdir(parents=True)
    if complete:
        run_dir.marker(tag).write_text(json.dumps({"step": step}))
    return tag


def test_only_marked_checkpoints_count_and_keep_last_prunes_the_oldest_but_the_best(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    for step in (10, 20, 30, 40):
        make(run_dir, step)
    make(run_dir, 50, complete=False)  # killed before it was marked complete
    run_dir.staging("step00000060").mkdir()
    assert run_dir.complete_tags() == ["step00000010", "step00000020", "step00000030", "step00000040"]
    checkpointer = Checkpointer(run_dir, CheckpointConfig(keep_last=2), DistInfo(0, 1, 0, torch.device("cpu")), "")
    checkpointer._prune(keep="step00000010")
    assert run_dir.complete_tags() == ["step00000010", "step00000030", "step00000040"]
    checkpointer._prune(keep=None)
    assert run_dir.complete_tags() == ["step00000030", "step00000040"]
    assert "already holds checkpoint step00000040; pass --resume" in str(run_dir.existing_checkpoint_error())
    assert run_dir.staging_leftovers() == [run_dir.checkpoints / "step00000060.partial"]


def test_a_run_dir_without_complete_checkpoints_needs_nothing(tmp_path):
    run_dir = RunDir(tmp_path)
    make(run_dir, 10, complete=False)
    assert run_dir.existing_checkpoint_error() is None


def test_fresh_clears_checkpoints_results_and_plots(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    make(run_dir, 10)
    run_dir.results.write_text("{}")
    (run_dir.plots / "roc.png").write_bytes(b"png")
    run_dir.config.write_text("run_dir: x\n")
    run_dir.clear()
    assert not run_dir.checkpoints.exists() and not run_dir.results.exists()
    assert not (run_dir.plots / "roc.png").exists() and run_dir.config.exists()  # rewritten at the start


def test_init_from_names_a_run_or_one_of_its_checkpoints(tmp_path):
    run_dir = RunDir(tmp_path / "stage1")
    make(run_dir, 10)
    newest = make(run_dir, 20)
    make(run_dir, 30, complete=False)
    assert source_checkpoint(run_dir.root) == run_dir.checkpoint(newest)
    assert source_checkpoint(run_dir.checkpoint("step00000010")) == run_dir.checkpoint("step00000010")
    with pytest.raises(JobError, match=r"train\.init_from: .*nowhere does not exist"):
        source_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JobError, match=r"neither a run directory with a complete checkpoint nor a checkpoint folder"):
        source_checkpoint(tmp_path / "empty")


def test_every_path_lies_inside_the_run_directory_or_beside_it(tmp_path):
    run_dir = RunDir(tmp_path / "runs" / "faces")
    inside = [run_dir.config, run_dir.results, run_dir.deepspeed_env, run_dir.sbatch_script, run_dir.latest,
              run_dir.rank_state("step00000001", 3), run_dir.checkpoint_config("step00000001")]
    assert all(run_dir.root in path.parents for path in inside)
    assert run_dir.rank_state("step00000001", 3).name == "rank00003.pt"
    assert run_dir.prometheus_targets("faces") == (tmp_path / "runs" / "prometheus_targets" / "faces.json").resolve()
    assert RunDir.tag_for(1234) == "step00001234"


def test_a_checkpoint_of_an_earlier_layout_is_refused_by_name(tmp_path):
    run_dir = RunDir(tmp_path)
    tag = make(run_dir, 10)  # a marker without "format": the layout before TrainState
    checkpointer = Checkpointer(run_dir, CheckpointConfig(), DistInfo(0, 1, 0, torch.device("cpu")), "")
    with pytest.raises(JobError, match=r"a checkpoint of layout 1 .* this version reads layout 2"):
        checkpointer.load(engine=None, tag=tag)
