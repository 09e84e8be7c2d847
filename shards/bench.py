"""Benchmark the training reader against its limit and the usual baselines, in one run.

    python -m shards.bench [--images 20000] [--workers 2] [--batches 120] [--rounds 3]

On a generated set of 160x160 JPEGs in identity folders, prints images/s per worker
process for:
  (a) decoding the same JPEG bytes to pixels in a loop, one process, with the reader's decoder
      (libjpeg-turbo through simplejpeg, into a kept buffer): the limit; and, for reference, with PIL;
  (b) this reader: shards -> P×K batches with the demo augmentations, through StreamLoader;
  (c) torchvision ImageFolder + DataLoader over the same images as files, same transforms;
  (d) webdataset's own pipeline over the same shards: WebDataset (shards split by worker, then
      shuffled) + sample shuffle + .decode("rgb8") (PIL) + the same random crop and flip in numpy
      + .batched, in a DataLoader with the same workers; and (d') the same pipeline with the
      reader's decode and augmentation in place of .decode and the numpy crop;
and the P×K buffer's peak (samples and encoded bytes). (c), (d) and (d') batch in shuffled
order, not P×K.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from shards.augment import Augmenter, decode_image, decode_jpeg_into
from shards.cli import main as shards_main
from shards.loader import StreamLoader
from shards.stream_config import AugmentConfig, StreamConfig

DEMO_AUGMENT = AugmentConfig(size=144, crop="random", hflip=True)  # FaceNet: random crop + flip
P, K = 32, 4


def make_images(root: Path, count: int, per_identity: int = 20, unique: int = 2000) -> list[Path]:
    """``count`` 160x160 JPEGs in identity folders: ``unique`` distinct smooth colour fields with
    sensor-like noise (about the entropy of a face crop), re-used under new names."""
    rng = np.random.default_rng(0)
    encoded = []
    for _ in range(unique):
        coarse = Image.fromarray(rng.integers(0, 255, size=(6, 6, 3), dtype=np.uint8))
        pixels = np.asarray(coarse.resize((160, 160), Image.Resampling.BICUBIC), dtype=np.float64)
        pixels = np.clip(pixels + rng.normal(0, 6, size=pixels.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    paths = []
    for index in range(count):
        folder = root / f"{index // per_identity:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index % per_identity:03d}.jpg"
        path.write_bytes(encoded[index % len(encoded)])
        paths.append(path)
    return paths


def raw_decode(paths: list[Path], decode) -> float:
    """Decoding to pixels (an RGB array), nothing else; the bytes are held as the reader holds them."""
    data = [bytearray(p.read_bytes()) for p in paths]
    started = time.perf_counter()
    for blob in data:
        decode(blob)
    return len(data) / (time.perf_counter() - started)


def pil_decode(blob: bytes) -> np.ndarray:
    return np.asarray(decode_image({"jpg": blob}))


class ReaderTransform:
    """The reader's decode and augmentation, as a function of one sample's JPEG bytes."""

    def __init__(self) -> None:
        self.augment = Augmenter(DEMO_AUGMENT, train=True)
        self.rng = np.random.default_rng(0)

    def __call__(self, blob: bytes) -> torch.Tensor:
        image = np.empty((DEMO_AUGMENT.size, DEMO_AUGMENT.size, 3), dtype=np.uint8)
        self.augment({"jpg": bytearray(blob)}, self.rng, image)
        return torch.from_numpy(image)


class FolderTransform(ReaderTransform):
    """The same for torchvision's ImageFolder, which hands over a path."""

    def __call__(self, path: str) -> torch.Tensor:
        return super().__call__(Path(path).read_bytes())


class CropFlip:
    """FaceNet's random window and horizontal flip on decoded pixels (H x W x 3), as a webdataset user
    writes it in numpy."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        size = DEMO_AUGMENT.size
        top, left = (int(self.rng.integers(0, side - size + 1)) for side in pixels.shape[:2])
        window = pixels[top:top + size, left:left + size]
        return np.ascontiguousarray(window[:, ::-1] if self.rng.random() < 0.5 else window)


def webdataset_pipeline(urls: list[str], reader_decoder: bool, batch_size: int = P * K,
                        repeat: bool = True) -> wds.WebDataset:
    """webdataset as its documentation sets it up: shards split over nodes and workers (each worker
    reads its own shards, shuffled), a shuffle buffer of samples, decode, augment, batches made in
    the workers (the DataLoader then takes batch_size=None)."""
    dataset = wds.WebDataset(urls, shardshuffle=len(urls), nodesplitter=wds.split_by_node,
                             workersplitter=wds.split_by_worker, seed=0).shuffle(1000)
    if reader_decoder:
        dataset = dataset.to_tuple("jpg", "cls").map_tuple(ReaderTransform(), int)
    else:
        dataset = dataset.decode("rgb8").to_tuple("jpg", "cls").map_tuple(CropFlip(), int)
    dataset = dataset.batched(batch_size, partial=False)
    return dataset.repeat() if repeat else dataset


def timed(batches, count: int) -> float:
    """Images/s over ``count`` batches after one warm-up batch (worker start-up excluded)."""
    iterator = iter(batches)
    next(iterator)
    started, images = time.perf_counter(), 0
    for _ in range(count):
        images += len(next(iterator)["image"] if isinstance(batches, StreamLoader) else next(iterator)[0])
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3, help="(a) to (d') are measured alternately")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[float]] = {"a": [], "a_pil": [], "b": [], "c": [], "d": [], "d_reader": []}
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "images", Path(tmp) / "shards"
        paths = make_images(src, args.images)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            shards_main(["build", "imagefolder", str(src), str(out), "--maxcount", "1000"])
        config = StreamConfig(shards=str(out), identities_per_batch=P, images_per_identity=K, buffer_samples=4096,
                              open_shards=4, num_workers=args.workers, augment=DEMO_AUGMENT)
        folder = ImageFolder(str(src), loader=FolderTransform())
        urls = sorted(str(path) for path in out.glob("train-*.tar"))  # StreamLoader's split
        staging = np.empty(160 * 160 * 3, dtype=np.uint8)
        for _ in range(args.rounds):
            results["a"].append(raw_decode(paths[:4000], partial(decode_jpeg_into, staging=staging)))
            results["a_pil"].append(raw_decode(paths[:4000], pil_decode))
            loader = StreamLoader(config, rank=0, world_size=1)
            results["b"].append(timed(loader, args.batches) / args.workers)
            peak = loader.stats()
            del loader
            baseline = DataLoader(folder, batch_size=P * K, shuffle=True, num_workers=args.workers, drop_last=True,
                                  prefetch_factor=4)
            results["c"].append(timed(baseline, min(args.batches, len(folder) // (P * K) - 2)) / args.workers)
            for key, reader_decoder in (("d", False), ("d_reader", True)):
                pipeline = DataLoader(webdataset_pipeline(urls, reader_decoder), batch_size=None,
                                      num_workers=args.workers, prefetch_factor=4)
                results[key].append(timed(pipeline, args.batches) / args.workers)
    median = {k: float(np.median(v)) for k, v in results.items()}
    print(f"\nreader throughput, {args.images} JPEGs 160x160 -> {DEMO_AUGMENT.size}, batches of {P}x{K}, "
          f"{args.workers} worker processes, {os.cpu_count()} CPU cores; median of {args.rounds} alternating rounds")
    print(f"{'':<53} {'images/s/worker':>15} {'range':>15} {'vs (a)':>7}")
    for key, label in [("a", "(a) decode of the same bytes, 1 process (limit)"),
                       ("a_pil", "    the same with PIL (reference)"),
                       ("b", "(b) shards StreamLoader, P×K + demo augmentations"),
                       ("c", "(c) ImageFolder + DataLoader, same transforms"),
                       ("d", "(d) webdataset: WebDataset + decode(rgb8) + crop/flip"),
                       ("d_reader", "(d') the same with the reader's decode + augment")]:
        span = f"{min(results[key]):.0f}-{max(results[key]):.0f}"
        print(f"{label:<53} {median[key]:>15.1f} {span:>15} {median[key] / median['a']:>6.2f}x")
    print(f"(b) / (c) = {median['b'] / median['c']:.2f}; (b) / (d) = {median['b'] / median['d']:.2f}; "
          f"(b) / (d') = {median['b'] / median['d_reader']:.2f}")
    print(f"P×K buffer peak per worker: {peak['peak_samples']} samples, {peak['peak_bytes'] / 1e6:.2f} MB encoded "
          f"(bound: buffer_samples = {config.buffer_samples})")


if __name__ == "__main__":
    main()
