"""Face alignment: MTCNN's five landmarks mapped onto a canonical template by a similarity
transform (rotation, uniform scale, translation), then the image is warped, not just cropped.

Templates: the 112x112 ArcFace template (eyes, nose tip, mouth corners), and a FaceNet-style
160x160 crop: the same template scaled to 128 px with a 16 px margin on every side.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
FACENET_MARGIN = 16

TEMPLATES = {
    "arcface112": (ARCFACE_112, 112),
    "facenet160": (ARCFACE_112 * (160 - 2 * FACENET_MARGIN) / 112 + FACENET_MARGIN, 160),
}


def similarity_transform(source_N2: np.ndarray, target_N2: np.ndarray) -> np.ndarray:
    """2x3 matrix M minimising sum |M [s; 1] - t|^2 over similarity transforms (Umeyama 1991)."""
    source_mean, target_mean = source_N2.mean(0), target_N2.mean(0)
    source_c, target_c = source_N2 - source_mean, target_N2 - target_mean
    covariance = target_c.T @ source_c / len(source_N2)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # no reflections
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    scale = (singular * sign).sum() / source_c.var(0).sum()
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


def warp(image: Image.Image, matrix_23: np.ndarray, size: int) -> Image.Image:
    """Apply the forward transform; PIL's AFFINE wants the output->input mapping."""
    inverse = np.linalg.inv(np.vstack([matrix_23, [0, 0, 1]]))[:2]
    return image.transform((size, size), Image.Transform.AFFINE, inverse.ravel().tolist(),
                           resample=Image.Resampling.BILINEAR)


def align_to_template(image: Image.Image, points_52: np.ndarray, template_52: np.ndarray, size: int) -> Image.Image:
    """The face whose five landmarks are ``points`` warped onto ``template`` (size x size).  Landmarks
    and templates count pixel centres from 0 (MTCNN, insightface, OpenCV's warpAffine); PIL counts
    pixel edges, half a pixel away: without the shift a face drawn to scale s lands (1 - s)/2 px off."""
    return warp(image, similarity_transform(points_52 + 0.5, template_52 + 0.5), size)


class FaceAligner:
    """MTCNN (facenet-pytorch; its weights ship in the wheel) plus a template warp."""

    def __init__(self, template: str, min_face_size: int = 20):
        from facenet_pytorch import MTCNN

        self.points, self.size = TEMPLATES[template]
        self.detector = MTCNN(select_largest=True, min_face_size=min_face_size, device="cpu")

    def landmarks(self, image: Image.Image) -> np.ndarray | None:
        """The five landmarks (x, y) of the largest face, or None if no face is found."""
        boxes, _, points = self.detector.detect(image, landmarks=True)
        return None if boxes is None else np.asarray(points[0], dtype=np.float64)

    def align(self, image: Image.Image) -> tuple[Image.Image, np.ndarray] | None:
        points = self.landmarks(image)
        if points is None:
            return None
        return align_to_template(image, points, self.points, self.size), points
