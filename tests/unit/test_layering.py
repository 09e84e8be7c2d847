"""Dependencies point one way: shards <- launcher <- facetrain <- medtrain (DESIGN.md)."""

import ast

import pytest

LAYERS = ["shards", "launcher", "facetrain", "medtrain"]


def imported_packages(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("package", LAYERS)
def test_no_import_against_the_dependency_direction(repo, package):
    allowed = set(LAYERS[: LAYERS.index(package) + 1])
    forbidden = set(LAYERS) - allowed
    offenders = [
        f"{path.relative_to(repo)} imports {name}"
        for path in sorted((repo / package).rglob("*.py"))
        for name in imported_packages(path)
        if name in forbidden
    ]
    assert not offenders, offenders


def test_task_table_entries_resolve_to_task_classes():
    from launcher.tasks import TASKS, task_class, task_config_class

    for name in TASKS:
        cls = task_class(name)
        assert cls.Config is task_config_class(name) and callable(cls.step)
