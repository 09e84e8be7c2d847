"""Where alignment puts the landmarks: on the template points, whatever the face's scale in
the source image (the half-pixel convention between landmarks and PIL matters when it is not 1)."""

import numpy as np
import pytest

from shards.align import TEMPLATES, FaceAligner
from tests.fixtures.landmark_blobs import blob_image, centroids


@pytest.mark.parametrize("template", ["arcface112", "facenet160"])
@pytest.mark.parametrize("scale", [0.6, 2.4])  # a face smaller than the template, and a photo's larger one
def test_the_aligned_landmarks_land_on_the_template_points(template, scale):
    points, size = TEMPLATES[template]
    angle = np.deg2rad(12)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (points - points.mean(0)) @ rotation.T + [220, 200]  # pixel centres, in a 440x400 photo
    aligner = FaceAligner(template)
    aligner.landmarks = lambda image: landmarks  # MTCNN's detection replaced by the known landmarks
    aligned, found = aligner.align(blob_image(landmarks, (440, 400), sigma=2.0 * scale))
    assert aligned.size == (size, size) and found is landmarks
    assert np.abs(centroids(np.asarray(aligned), points) - points).max() < 0.06  # the convention slip: 0.1-0.7
