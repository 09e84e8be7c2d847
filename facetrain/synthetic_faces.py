"""Procedurally drawn face identities, for demos and tests that must run without a dataset.

Each identity is a fixed set of facial proportions and colours (face shape, skin, hair,
eye spacing and size, brows, nose, mouth); each image of it re-draws that face with
nuisance variation (position, scale, tilt, lighting, expression, noise).  Identity is
carried by geometry and colour together, so it survives flips, crops and colour jitter.
"""

from __future__ import annotations

import numpy as np


def identity_params(rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """The fixed traits of one identity."""
    return {
        "face_w": rng.uniform(0.26, 0.36),
        "face_h": rng.uniform(0.34, 0.44),
        # Skin along a dark-to-light tone axis, hair from black through brown to blond.
        "skin": rng.uniform() * np.array([150, 145, 135])
        + np.array([90, 60, 45]) + rng.normal(0, 8, size=3),
        "hair": rng.uniform(0.05, 1.0) * np.array([230, 190, 120]) + rng.normal(0, 15, size=3),
        "hairline": rng.uniform(0.18, 0.34),
        "eye_y": rng.uniform(0.38, 0.48),
        "eye_dx": rng.uniform(0.09, 0.16),
        "eye_r": rng.uniform(0.025, 0.05),
        "iris": rng.uniform(0, 160, size=3),
        "brow_gap": rng.uniform(0.04, 0.08),
        "brow_tilt": rng.uniform(-0.4, 0.4),
        "nose_len": rng.uniform(0.06, 0.14),
        "mouth_y": rng.uniform(0.64, 0.74),
        "mouth_w": rng.uniform(0.06, 0.15),
        "lips": rng.uniform([120, 20, 30], [220, 110, 120]),
    }


def render_face(params: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image (size x size x 3, uint8) of the identity described by ``params``."""
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-0.05, 0.05, size=2)
    angle = rng.uniform(-0.15, 0.15)
    coords = (np.arange(size) + 0.5) / size - 0.5
    y, x = np.meshgrid(coords, coords, indexing="ij")
    cos, sin = np.cos(angle), np.sin(angle)
    # Inverse map from the image to face coordinates (face centred at 0.5, 0.5).
    u = (cos * (x - shift[0]) + sin * (y - shift[1])) / scale + 0.5
    v = (-sin * (x - shift[0]) + cos * (y - shift[1])) / scale + 0.5

    image = np.empty((size, size, 3))
    image[:] = rng.uniform(40, 220) + rng.normal(0, 10, size=3)
    face = ((u - 0.5) / params["face_w"]) ** 2 + ((v - 0.52) / params["face_h"]) ** 2 <= 1
    image[face] = params["skin"]
    image[face & (v < params["hairline"] + 0.1)] = params["hair"]
    for side in (-1, 1):
        eye_x = 0.5 + side * params["eye_dx"]
        eye = (u - eye_x) ** 2 + (v - params["eye_y"]) ** 2 <= params["eye_r"] ** 2
        image[eye] = (245, 245, 245)
        pupil = (u - eye_x) ** 2 + (v - params["eye_y"]) ** 2 <= (0.55 * params["eye_r"]) ** 2
        image[pupil] = params["iris"]
        brow_v = params["eye_y"] - params["brow_gap"] + side * params["brow_tilt"] * (u - eye_x)
        brow = (np.abs(u - eye_x) < 1.3 * params["eye_r"]) & (np.abs(v - brow_v) < 0.012)
        image[brow] = params["hair"] * 0.6
    nose = (np.abs(u - 0.5) < 0.015) & (v > params["eye_y"]) & (v < params["eye_y"] + params["nose_len"])
    image[nose] = params["skin"] * 0.75
    mouth_h = 0.015 + rng.uniform(0.0, 0.02)  # expression: closed to open
    mouth = ((u - 0.5) / params["mouth_w"]) ** 2 + ((v - params["mouth_y"]) / mouth_h) ** 2 <= 1
    image[mouth] = params["lips"]

    image = image * rng.uniform(0.8, 1.2) + rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_identity_set(
    num_identities: int, images_per_identity: int, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, size, size, 3) uint8 and labels (N,) int64, identity-contiguous."""
    rng = np.random.default_rng(seed)
    identities = [identity_params(rng) for _ in range(num_identities)]
    images = np.stack(
        [render_face(p, size, rng) for p in identities for _ in range(images_per_identity)]
    )
    labels = np.repeat(np.arange(num_identities), images_per_identity)
    return images, labels
