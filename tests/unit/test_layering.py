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
    from launcher.tasks import TASKS, task_class, task_config_class

    for name in TASKS:
        cls = task_class(name)
        assert cls.Config is task_config_class(name) and callable(cls.step)


# What each launcher room may import from the others (monitoring and runtime name the runtime's
# types only under TYPE_CHECKING, which the AST walk sees too; that is allowed where listed).
LAUNCHER_ROOMS = {
    "launcher.config": {"launcher.config", "launcher.errors", "launcher.tasks"},
    "launcher.launch": {"launcher.config", "launcher.errors", "launcher.run_dir", "launcher.launch"},
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


def test_the_launch_side_validates_a_job_without_torch_or_deepspeed(repo):
    """Importing the launch CLI and checking a job config (every task's config class included)
    loads neither torch (whose import brings torch.distributed) nor DeepSpeed."""
    script = (
        "import sys\n"
        "import launcher.launch.cli, launcher.launch.supervise, launcher.run_dir\n"
        "from launcher.config.schema import load_job_config\n"
        "from launcher.tasks import TASKS, task_config_class\n"
        f"load_job_config({str(repo / 'configs' / 'face' / 'casia_paper.yaml')!r})\n"
        "[task_config_class(name) for name in TASKS]\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'deepspeed')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
