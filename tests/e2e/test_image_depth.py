"""Image depth as data: 16-bit sources stay 16-bit through the build (resizing included), the
reader maps them to uint8 by the declared intensity mapping, and the manifest, verify and
stats report depth, channels and intensity range and flag saturated, constant and tiny images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shards.cli import main
from shards.eval_reader import eval_loader
from shards.stream_config import AugmentConfig
from shards.verify import read_samples
from tests.fixtures import datasets


def build(fmt: str, src: Path, out: Path, *options: str) -> dict:
    assert main(["build", fmt, str(src), str(out), *options]) == 0
    return json.loads((out / "manifest.json").read_text())


def stored(out: Path, manifest: dict) -> dict[str, dict]:
    """source -> the sample's fields, with its json decoded."""
    found = {}
    for shard in manifest["shards"]:
        samples, _ = read_samples(out / shard["name"])
        for fields in samples.values():
            meta = json.loads(fields["json"])
            found[meta["source"]] = {**fields, "meta": meta}
    return found


def expected(slice_: np.ndarray, low: float, high: float) -> np.ndarray:
    """The documented mapping, written out: round(255 (x - low) / (high - low)), clipped."""
    return np.clip(np.rint(255 * (slice_.astype(np.float64) - low) / (high - low)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tumor(tmp_path_factory) -> tuple[Path, dict, dict]:
    root = tmp_path_factory.mktemp("tumor")
    fixture = datasets.make_figshare(root / "src")
    return root / "out", build("figshare-tumor", root / "src", root / "out"), fixture


@pytest.mark.parametrize("intensity, window", [("minmax", None), ("window", (1000.0, 3000.0))])
def test_the_reader_maps_tumor_slices_from_their_16_bits(tumor, intensity, window):
    out, manifest, fixture = tumor
    assert manifest["intensity"] == "minmax"
    assert manifest["splits"]["train"]["pixels"] == [{
        "bit_depth": 16, "channels": 1, "samples": 8,
        "min": min(int(a.min()) for a in fixture["images"].values()),
        "max": max(int(a.max()) for a in fixture["images"].values())}]
    # 64x48 slices, size 48: resize is a no-op, the centre crop takes rows 8..55
    augment = AugmentConfig(size=48, crop="center", hflip=False, intensity=intensity,
                            **({"intensity_window": window} if window else {}))
    seen = 0
    for batch in eval_loader(str(out), "train", 0, 1, 3, augment):
        for image, meta in zip(batch["image"].numpy(), batch["meta"], strict=True):
            slice_ = fixture["images"][int(Path(meta["source"]).stem)]
            low, high = window or (slice_.min(), slice_.max())
            want = expected(slice_, low, high)[8:56]
            assert all(np.array_equal(image[c], want) for c in range(3)), meta["source"]
            seen += 1
    assert seen == 8


def test_a_resizing_build_keeps_16_bit_values(tmp_path):
    images = datasets.make_depths(tmp_path / "src")
    manifest = build("imagefolder", tmp_path / "src", tmp_path / "out", "--size", "20")
    samples = stored(tmp_path / "out", manifest)
    for name in ("mri/scan_0.png", "mri/scan_1.png"):
        png = Image.open(io.BytesIO(samples[name]["png"]))
        pixels = np.asarray(png)
        assert png.mode == "I;16" and pixels.shape == (27, 20) and pixels.max() > 255
        source = Image.fromarray(images[name]).resize((20, 27), Image.Resampling.BICUBIC)
        assert np.array_equal(pixels, np.asarray(source))  # bicubic in 16 bits, nothing clipped
        assert samples[name]["meta"]["pixels"] == {"bit_depth": 16, "channels": 1, "min": int(images[name].min()),
                                                   "max": int(images[name].max())}
    kinds = manifest["splits"]["train"]["pixels"]
    assert [(k["bit_depth"], k["channels"], k["samples"]) for k in kinds] == [(8, 3, 3), (16, 1, 3)]
    assert manifest["intensity"] is None  # an imagefolder implies no mapping


def test_verify_and_stats_report_depth_and_flag_odd_images(tmp_path, capsys):
    images = datasets.make_depths(tmp_path / "src")
    out = tmp_path / "out"
    manifest = build("imagefolder", tmp_path / "src", out)
    flagged = sorted((Path(f["path"]).name, f["reason"]) for f in manifest["flagged"])
    assert flagged == [("constant.png", "constant: every pixel has the same value"),
                       ("saturated.png", "saturated: over half of the pixel values at the image maximum"),
                       ("tiny.png", "a side under 2 pixels (--min-size)"),
                       ("tiny.png", "constant: every pixel has the same value")]
    assert sum(s["count"] for s in manifest["shards"]) == len(images)  # flagged images are kept
    capsys.readouterr()

    assert main(["verify", str(out)]) == 0  # warnings only
    report = capsys.readouterr().out.splitlines()
    scans = np.stack([images[f"mri/scan_{n}.png"] for n in range(3)])
    assert report[0] == ("train: 3 images 8-bit 3-channel, intensities 0..255; "
                         f"3 images 16-bit 1-channel, intensities {scans.min()}..{scans.max()}")
    shard = out / "train-000000.tar"
    assert report[1:] == [
        f"WARN {shard}: sample odd_constant: constant: every pixel has the same value",
        f"WARN {shard}: sample odd_saturated: saturated: over half of the pixel values at the image maximum",
        f"WARN {shard}: sample odd_tiny: a side under 2 pixels (--min-size)",
        f"WARN {shard}: sample odd_tiny: constant: every pixel has the same value",
        f"{out}: OK, 4 warning(s)"]

    assert main(["verify", str(out), "--min-size", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{out}: OK, 3 warning(s)"

    assert main(["stats", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "pixels train: 3 images 8-bit 3-channel, intensities 0..255; 3 images 16-bit 1-channel" in summary
    assert "16-bit images: the reader maps them to 8 bits by AugmentConfig.intensity" in summary
    assert "flagged: 4" in summary and "constant: every pixel has the same value" in summary
