"""Procedurally drawn faces in the layouts real data comes in: a training set in the
CASIA-WebFace layout (``<7-digit id>/<NNN>.jpg``) and a verification set in insightface's
``.bin`` layout, so the demo runs the same pipeline a real dataset does."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from facetrain.synthetic_faces import identity_params, render_face


def write_casia_layout(root: Path, identities: int, images_per_identity: int, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for identity in range(identities):
        params = identity_params(rng)
        folder = root / f"{identity + 1:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(images_per_identity):
            Image.fromarray(render_face(params, size, rng)).save(folder / f"{number + 1:03d}.jpg", quality=92)


def write_verification_bin(path: Path, identities: int, pairs_per_fold: int, size: int, seed: int) -> None:
    """A verification set in insightface's ``.bin`` layout (a pickle of the encoded images, two
    per pair, and issame_list), of identities drawn apart from any training set's: 10 folds, each
    half matched pairs then half mismatched, as the published LFW .bin orders them."""
    rng = np.random.default_rng(seed)
    people = [identity_params(rng) for _ in range(identities)]

    def jpeg(person: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(render_face(people[person], size, rng)).save(buffer, format="JPEG", quality=92)
        return buffer.getvalue()

    bins, issame = [], []
    for _ in range(10):
        for same in [True] * (pairs_per_fold // 2) + [False] * (pairs_per_fold - pairs_per_fold // 2):
            one = int(rng.integers(identities))
            other = one if same else int((one + rng.integers(1, identities)) % identities)
            bins += [jpeg(one), jpeg(other)]
            issame.append(same)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps((bins, issame), protocol=2))
