"""MTCNN alignment on a real photograph (scikit-image ships the 'astronaut' portrait)."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

from shards.align import FaceAligner
from shards.cli import main
from shards.verify import read_samples


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory):
    """One identity folder with a real face and one picture with no face in it."""
    root = tmp_path_factory.mktemp("align") / "src"
    (root / "astronaut").mkdir(parents=True)
    Image.fromarray(data.astronaut()).save(root / "astronaut" / "face.jpg", quality=95)
    noise = np.random.default_rng(0).integers(90, 110, size=(200, 240, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "astronaut" / "wall.jpg")
    return root


@pytest.mark.parametrize("template", ["arcface112", "facenet160"])
def test_aligned_face_has_the_eyes_at_the_template_positions(photo_set, tmp_path, template):
    out = tmp_path / "out"
    assert main(["build", "imagefolder", str(photo_set), str(out), "--align", "mtcnn", "--template", template]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["alignment"] == {"template": template, "aligned": 1, "not_found_kept_centre_crop": 1,
                                     "not_found_skipped": 0}
    samples, _ = read_samples(out / manifest["shards"][0]["name"])
    face = next(s for k, s in samples.items() if k.endswith("face"))
    assert json.loads(face["json"])["aligned"] is True
    aligned = Image.open(io.BytesIO(face["jpg"]))
    aligner = FaceAligner(template)
    assert aligned.size == (aligner.size, aligner.size)
    found = aligner.landmarks(aligned)  # an independent detection on the written crop
    assert found is not None
    eye_error = np.linalg.norm(found[:2] - aligner.points[:2], axis=1)
    assert eye_error.max() < 0.04 * aligner.size, eye_error  # within a few pixels
    wall = next(s for k, s in samples.items() if k.endswith("wall"))
    assert json.loads(wall["json"])["aligned"] is False
    assert Image.open(io.BytesIO(wall["jpg"])).size == (aligner.size, aligner.size)


def test_faces_not_found_can_be_skipped(photo_set, tmp_path):
    out = tmp_path / "out"
    assert main(["build", "imagefolder", str(photo_set), str(out), "--align", "mtcnn", "--unaligned", "skip"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["alignment"]["not_found_skipped"] == 1
    assert [s["reason"] for s in manifest["skipped"]] == ["no face found by MTCNN"]
    assert manifest["shards"][0]["count"] == 1
