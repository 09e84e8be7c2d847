"""The one explicit table of tasks the engine can run.

Entries are import paths, resolved only when a config names the task, so ``launcher``
never imports ``facetrain`` or ``medtrain`` at module level (the dependency direction in
DESIGN.md points the other way).  Each task names its config class apart from the task
class: the config modules import no torch, so ``launch`` validates a job without it.
"""

from __future__ import annotations

import importlib

from launcher.config.loader import ConfigError, did_you_mean

TASKS: dict[str, tuple[str, str]] = {  # name -> (config class, task class)
    "face_triplet": ("facetrain.config:FaceTripletConfig", "facetrain.face_task:FaceTripletTask"),
    "medical_classification": ("medtrain.config:MedicalClassificationConfig",
                               "medtrain.task:MedicalClassificationTask"),
}


def _resolve(name: str, which: int, source: str) -> type:
    if name not in TASKS:
        raise ConfigError(
            f"{source}: task.name: unknown task {name!r}{did_you_mean(name, TASKS)}; "
            f"known tasks: {', '.join(sorted(TASKS))}"
        )
    module_name, _, class_name = TASKS[name][which].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def task_class(name: str, source: str = "config") -> type:
    """The task class registered under ``name``."""
    return _resolve(name, 1, source)


def task_config_class(name: str, source: str = "config") -> type:
    """The dataclass that validates the ``task:`` section of a job using ``name``."""
    return _resolve(name, 0, source)
