import pytest

from tests.dist.face_jobs import build_face_shards


@pytest.fixture(scope="session")
def face_shards(tmp_path_factory):
    return build_face_shards(tmp_path_factory.mktemp("faces"))
