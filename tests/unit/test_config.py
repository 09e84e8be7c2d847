"""Strict config loading: every mistake names the file, the key path and what is allowed."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from launcher.config.loader import ConfigError, config_yaml, load_config
from launcher.config.schema import load_job_config

VALID = """\
run_dir: {run_dir}
task:
  name: face_triplet
  margin: 0.3
  stream: {{shards: /data/shards, identities_per_batch: 8}}
train:
  steps: 10
optimizer:
  name: lamb
  lr: 1e-3
  betas: [0.9, 0.99]
deepspeed:
  zero_stage: 1
"""


@dataclass(frozen=True)
class Inner:
    size: int = 1
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    scales: tuple[float, ...] = ()
    ratio: float = 0.5
    enabled: bool = False


def write(tmp_path, text, name="job.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_job_config_builds_typed_sections(tmp_path):
    job = load_job_config(write(tmp_path, VALID.format(run_dir=tmp_path)))
    assert type(job.task).__name__ == "FaceTripletConfig"  # the task's own class, resolved by name
    assert job.task.margin == 0.3 and job.task.stream.identities_per_batch == 8
    assert job.optimizer.name == "lamb" and job.optimizer.lr == 1e-3
    assert job.optimizer.betas == (0.9, 0.99)
    assert job.deepspeed.zero_stage == 1
    assert job.deepspeed.gradient_clipping == 1.0  # explicit default, not DeepSpeed's


def test_misspelt_engine_key_names_file_path_and_suggestion(tmp_path):
    path = write(tmp_path, VALID.format(run_dir=tmp_path).replace("zero_stage", "zero_stgae"))
    with pytest.raises(ConfigError) as err:
        load_job_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "deepspeed.zero_stgae" in message
    assert "did you mean 'zero_stage'" in message
    assert "gradient_clipping" in message  # the allowed keys are listed


def test_misspelt_task_key_is_checked_against_the_task_schema(tmp_path):
    path = write(tmp_path, VALID.format(run_dir=tmp_path).replace("margin", "margn"))
    expected = r"task\.margn: unknown key \(did you mean 'margin'\?\)"
    with pytest.raises(ConfigError, match=expected):
        load_job_config(path)


def test_unknown_task_lists_known_tasks(tmp_path):
    path = write(tmp_path, VALID.format(run_dir=tmp_path).replace("face_triplet", "face_triplets"))
    with pytest.raises(ConfigError, match=r"unknown task 'face_triplets' \(did you mean 'face_triplet'\?\)"):
        load_job_config(path)
    path = write(tmp_path, VALID.format(run_dir=tmp_path).replace("  name: face_triplet\n", ""))
    with pytest.raises(ConfigError, match=r"task\.name: required key is missing"):
        load_job_config(path)


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path, VALID.format(run_dir=tmp_path).replace("steps: 10", "steps: ten"))
    with pytest.raises(ConfigError, match=r"train\.steps: expected int, got str 'ten'"):
        load_job_config(path)


def test_literal_lists_allowed_values(tmp_path):
    path = write(tmp_path, VALID.format(run_dir=tmp_path).replace("name: lamb", "name: adam"))
    with pytest.raises(ConfigError, match=r"optimizer\.name: 'adam' is not one of 'adamw', 'sgd', 'lamb'"):
        load_job_config(path)


def test_missing_required_key(tmp_path):
    path = write(tmp_path, VALID.format(run_dir=tmp_path).replace("  steps: 10\n", "  seed: 1\n"))
    with pytest.raises(ConfigError, match=r"train\.steps: required key is missing"):
        load_job_config(path)


def test_post_init_validation_is_reported_with_the_section(tmp_path):
    path = write(tmp_path, VALID.format(run_dir=tmp_path).replace("steps: 10", "steps: 0"))
    with pytest.raises(ConfigError, match=r"train: train\.steps, log_every and max_nonfinite_in_a_row must"):
        load_job_config(path)


def test_overrides_are_typed_and_checked(tmp_path):
    path = write(tmp_path, VALID.format(run_dir=tmp_path))
    job = load_job_config(path, ["train.steps=99", "task.model.image_size=48", "schedule.decay=linear"])
    assert (job.train.steps, job.task.model.image_size, job.schedule.decay) == (99, 48, "linear")
    with pytest.raises(ConfigError, match=r"task\.model\.imagesize: unknown key \(did you mean 'image_size'\?\)"):
        load_job_config(path, ["task.model.imagesize=48"])
    with pytest.raises(ConfigError, match=r"train\.stpes: unknown key \(did you mean 'steps'\?\)"):
        load_job_config(path, ["train.stpes=5"])
    with pytest.raises(ConfigError, match=r"train\.steps: expected int"):
        load_job_config(path, ["train.steps=1.5"])
    with pytest.raises(ConfigError, match=r"expected KEY\.PATH=VALUE"):
        load_job_config(path, ["train.steps"])


def test_generic_loader_nested_tuples_and_bools(tmp_path):
    path = write(tmp_path, "name: x\ninner: {size: 3, mode: b}\nscales: [1, 2.5]\nenabled: true\n")
    config = load_config(path, Outer)
    assert config == Outer(name="x", inner=Inner(size=3, mode="b"), scales=(1.0, 2.5), enabled=True)
    with pytest.raises(ConfigError, match=r"inner: expected a mapping"):
        load_config(write(tmp_path, "name: x\ninner: 3\n"), Outer)
    with pytest.raises(ConfigError, match=r"enabled: expected bool, got int 1"):
        load_config(write(tmp_path, "name: x\nenabled: 1\n"), Outer)
    with pytest.raises(ConfigError, match=r"key True is not a name .*quote the key"):
        load_config(write(tmp_path, "name: x\non: 1\n"), Outer)
    with pytest.raises(ConfigError, match=r"scales\[1\]: expected float"):
        load_config(write(tmp_path, "name: x\nscales: [1, abc]\n"), Outer)
    with pytest.raises(ConfigError, match=r"'inner\.size' is a value, not a section"):
        load_config(path, Outer, ["inner.size.deep=1"])


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read config file"):
        load_job_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_job_config(write(tmp_path, "train: [unclosed\n", "bad.yaml"))
    with pytest.raises(ConfigError, match=r"top level must be a mapping"):
        load_job_config(write(tmp_path, "- a\n- b\n", "list.yaml"))


def test_resolved_config_round_trips(tmp_path):
    job = load_job_config(write(tmp_path, VALID.format(run_dir=tmp_path)), ["train.seed=7"])
    (tmp_path / "resolved.yaml").write_text(config_yaml(job))
    assert load_job_config(tmp_path / "resolved.yaml") == job


def test_shipped_job_configs_load(repo):
    """Job configs; cluster files (tests/e2e/test_launch_dry_run.py) and monitoring files
    (tests/e2e/test_monitoring_configs.py) are checked where they are used."""
    for path in sorted((repo / "configs").rglob("*.yaml")):
        if not {"monitoring", "clusters"} & set(path.parts):
            load_job_config(path)


def test_engine_features_are_typed_sections(tmp_path):
    path = write(tmp_path, VALID.format(run_dir=tmp_path))
    job = load_job_config(path, ["checkpoint.keep_best={metric: verification_auc}",
                                 "train.early_stop={metric: verification_eer, mode: min, patience: 2}",
                                 "train.init_from=/runs/stage1", "train.init_new_keys=[head.]"])
    assert (job.checkpoint.keep_best.metric, job.checkpoint.keep_best.mode) == ("verification_auc", "max")
    assert (job.train.early_stop.mode, job.train.early_stop.patience, job.train.early_stop.min_delta) == ("min", 2, 0.0)
    assert job.train.init_from == "/runs/stage1" and job.train.init_new_keys == ("head.",)
    assert load_job_config(path).checkpoint.keep_best is None
    with pytest.raises(ConfigError, match=r"train\.early_stop: .*patience must be at least 1"):
        load_job_config(path, ["train.early_stop={metric: m, patience: 0}"])
    with pytest.raises(ConfigError, match=r"checkpoint\.keep_best\.mode: 'best' is not one of 'max', 'min'"):
        load_job_config(path, ["checkpoint.keep_best={metric: m, mode: best}"])


@pytest.mark.parametrize(("section", "overrides", "message"), [
    ("task: null\n", [], r"task\.name: required key is missing"),
    ("task: face_triplet\n", [], r"task: expected a mapping .* got str 'face_triplet'"),
    ("task: {name: [a]}\n", [], r"task\.name: expected str, got list \['a'\]"),
    ("", ["task.stream.shards=/s"], r"task\.name: required key is missing"),
])
def test_a_task_section_that_is_not_a_named_mapping_is_a_clear_error(tmp_path, section, overrides, message):
    path = write(tmp_path, f"run_dir: {tmp_path}\ntrain: {{steps: 5}}\n" + section)
    with pytest.raises(ConfigError, match=message):
        load_job_config(path, overrides)


@pytest.mark.parametrize("overrides", [
    ["task.stream.shards=/s", "task.name=face_triplet"],  # the name first, whatever the order given
    ["task.name='face_triplet'", "task.stream.shards=/s"],  # a value is YAML, quoted or not
    ["task={name: face_triplet, stream: {shards: /s}}"],
])
def test_the_task_can_be_named_and_filled_from_the_command_line(tmp_path, overrides):
    path = write(tmp_path, f"run_dir: {tmp_path}\ntrain: {{steps: 5}}\ntask: null\n")
    job = load_job_config(path, overrides)
    assert type(job.task).__name__ == "FaceTripletConfig" and job.task.stream.shards == "/s"
