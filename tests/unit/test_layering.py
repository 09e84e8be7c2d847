"""Dependencies point one way: shards <- launcher <- facetrain <- medtrain (DESIGN.md); inside
launcher, the launch side never touches the process-group runtime."""

import ast
import subprocess
import sys

import pytest

LAYERS = ["shards", "launcher", "facetrain", "medtrain"]


def imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def imported_packages(path):
    return (name.split(".")[0] for name in imported_modules(path))


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
    from launcher.config.schema import TaskConfig
    from launcher.tasks import TASKS, task_class, task_config_class

    for name in TASKS:
        assert issubclass(task_config_class(name), TaskConfig) and callable(task_class(name).step)


# What each launcher room may import from the others (monitoring and runtime name the runtime's
# types only under TYPE_CHECKING, which the AST walk sees too; that is allowed where listed).
LAUNCHER_ROOMS = {
    "launcher.config": {"launcher.config", "launcher.errors", "launcher.tasks"},
    "launcher.launch": {"launcher.config", "launcher.errors", "launcher.run_dir", "launcher.run_lock",
                        "launcher.failures", "launcher.stops", "launcher.launch"},
    "launcher.monitoring": {"launcher.config", "launcher.errors", "launcher.run_dir", "launcher.monitoring",
                            "launcher.runtime.dist", "launcher.runtime.task"},
}


@pytest.mark.parametrize("room", sorted(LAUNCHER_ROOMS))
def test_launcher_rooms_import_only_what_they_may(repo, room):
    allowed = LAUNCHER_ROOMS[room]
    offenders = [
        f"{path.relative_to(repo)} imports {name}"
        for path in sorted((repo / room.replace(".", "/")).rglob("*.py"))
        for name in imported_modules(path)
        if name.startswith("launcher.") and not any(name == a or name.startswith(a + ".") for a in allowed)
    ]
    assert not offenders, offenders


def test_the_launch_side_plans_a_job_without_torch_or_deepspeed(repo, tmp_path):
    """`launch --dry-run` (the config checked, every task's config class, the command planned)
    loads neither torch (whose import brings torch.distributed) nor DeepSpeed."""
    config = repo / "configs" / "face" / "casia_paper.yaml"
    script = (
        "import contextlib, io, sys\n"
        "from launcher.launch import cli\n"
        "from launcher.tasks import TASKS, task_config_class\n"
        "[task_config_class(name) for name in TASKS]\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert cli.main([{str(config)!r}, '--dry-run', '--set', 'run_dir={tmp_path / 'run'}']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'deepspeed')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
