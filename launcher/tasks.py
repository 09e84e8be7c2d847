"""The one explicit table of tasks the engine can run.

Entries are import paths, resolved only when a config names the task, so ``launcher``
never imports ``facetrain`` or ``medtrain`` at module level (the dependency direction in
DESIGN.md points the other way).
"""

from __future__ import annotations

import difflib
import importlib

from launcher.config import ConfigError

TASKS: dict[str, str] = {
    "face_identity": "facetrain.identity_task:IdentityClassificationTask",
    "face_triplet": "facetrain.face_task:FaceTripletTask",
}


def task_class(name: str, source: str = "config") -> type:
    """The task class registered under ``name``."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{source}: task.name: unknown task {name!r}{hint}; known tasks: {', '.join(sorted(TASKS))}"
        )
    module_name, _, class_name = TASKS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def task_config_class(name: str, source: str = "config") -> type:
    """The dataclass that validates the ``task:`` section of a job using ``name``."""
    return task_class(name, source).Config
