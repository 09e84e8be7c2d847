"""Benchmark ``shards build`` throughput: plain, resized, and MTCNN-aligned, 1 and 2 workers.

    python -m shards.bench_build [--images 6000] [--align-images 400]

The input is a CASIA-WebFace-style folder of 250x250 JPEGs, each a jittered crop (shift,
scale, brightness) of scikit-image's 'astronaut' portrait, so that MTCNN finds a real face in
every image and alignment does its full work.  Needs scikit-image (a dev dependency).
Worker start-up (spawn, imports) is inside the timings: it is what a user waits for.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from shards.build import build
from shards.options import BuildOptions


def make_faces(root: Path, count: int, per_identity: int = 20, seed: int = 0) -> None:
    from skimage import data

    portrait = Image.fromarray(data.astronaut())
    rng = np.random.default_rng(seed)
    for index in range(count):
        folder = root / f"{index // per_identity:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        side = rng.uniform(200, 300)
        cx, cy = 224 + rng.uniform(-20, 20), 120 + rng.uniform(-20, 20)
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        crop = portrait.crop(tuple(map(round, box))).resize((250, 250), Image.Resampling.BICUBIC)
        crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.8, 1.2))
        crop.save(folder / f"{index % per_identity + 1:03d}.jpg", quality=90)


def time_build(src: Path, workdir: Path, **options) -> tuple[int, float]:
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    manifest = build(BuildOptions(format="casia-webface", src=src, out=out, maxcount=50, **options), "bench")
    seconds = time.perf_counter() - started
    return sum(s["count"] for s in manifest["shards"]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6000, help="images for the rows without alignment")
    parser.add_argument("--align-images", type=int, default=400, help="images for the MTCNN rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        make_faces(workdir / "plain", args.images)
        make_faces(workdir / "align", args.align_images)
        rows = []
        for label, src, options in [
            ("copy JPEG bytes", workdir / "plain", {}),
            ("decode+resize 112+encode", workdir / "plain", {"size": 112}),
            ("MTCNN align arcface112", workdir / "align", {"align": "mtcnn"}),
        ]:
            for workers in (1, 2):
                count, seconds = time_build(src, workdir, workers=workers, **options)
                rows.append((label, workers, count, seconds))
    print(f"\nshards build throughput on {os.cpu_count()} CPU cores (250x250 JPEG faces)")
    print(f"{'mode':<26} {'workers':>7} {'images':>7} {'seconds':>8} {'images/s':>9} {'vs 1 worker':>12}")
    for label, workers, count, seconds in rows:
        single = next(c / s for lab, w, c, s in rows if lab == label and w == 1)
        print(f"{label:<26} {workers:>7} {count:>7} {seconds:>8.2f} {count / seconds:>9.1f} "
              f"{count / seconds / single:>11.2f}x")


if __name__ == "__main__":
    main()
