"""docs/configuration.md lists every config key the code accepts (and no stale ones)."""

import dataclasses
import re
import typing

from launcher.config.schema import JobConfig
from launcher.tasks import TASKS, task_config_class


def documented_keys(text: str, heading: str) -> set[str]:
    start = text.index("\n" + heading) + 1
    section = text[start:].split("\n", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE))


def field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_engine_key_is_documented(repo):
    text = (repo / "docs" / "configuration.md").read_text()
    assert documented_keys(text, "## Top level") == field_names(JobConfig)
    for name, section in typing.get_type_hints(JobConfig).items():
        if dataclasses.is_dataclass(section) and name != "task":
            assert documented_keys(text, f"## `{name}`") == field_names(section), name


def test_every_task_key_is_documented(repo):
    text = (repo / "docs" / "configuration.md").read_text()
    for name in TASKS:
        assert documented_keys(text, f"### `{name}`") == field_names(task_config_class(name)) - {"name"}


def test_every_cluster_key_is_documented(repo):
    from launcher.launch.cluster import ClusterConfig, SlurmConfig

    text = (repo / "docs" / "configuration.md").read_text()
    assert documented_keys(text, "## Cluster (`launch --cluster FILE`)") == field_names(ClusterConfig)
    assert documented_keys(text, "### Cluster `slurm`") == field_names(SlurmConfig)
