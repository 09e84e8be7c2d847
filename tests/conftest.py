import os
import sys
from pathlib import Path

import pytest

from tests.dist.jobs import build_face_shards

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def child_env() -> dict[str, str]:
    """Environment for child processes: the repo importable, tests importable, quiet logs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """A fresh ``child_env()`` per test (tests may change it); module fixtures call ``child_env`` itself."""
    return child_env()


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def face_shards(tmp_path_factory) -> Path:
    """Shards of 30 synthetic identities x 8 images (train 0.7 / val 0.3), for real jobs."""
    return build_face_shards(tmp_path_factory.mktemp("faces"))
