"""A procedurally drawn face-identity set written in the CASIA-WebFace layout
(``<7-digit id>/<NNN>.jpg``), so the demo runs the same pipeline a real dataset does."""

from __future__ import annotations

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
