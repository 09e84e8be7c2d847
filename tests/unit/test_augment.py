"""The training augmentation's JPEG fast path (simplejpeg into a kept buffer; a flip decoded as
BGR and read backwards) against an independent PIL computation of the same window and flip."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shards.augment import Augmenter
from shards.stream_config import AugmentConfig


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    coarse.resize((width, height), Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def augmented(augment: Augmenter, fields: dict, rng: np.random.Generator) -> np.ndarray:
    out = np.full((augment.config.size, augment.config.size, 3), 7, dtype=np.uint8)
    augment(fields, rng, out)
    return out


def pil_window(data: bytes, seed: int, size: int) -> np.ndarray:
    """The window and flip the documented draws ask for (top, left, flip: three uniforms), by PIL."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    top_u, left_u, flip_u = np.random.default_rng(seed).random(3)
    top, left = int(top_u * (pixels.shape[0] - size + 1)), int(left_u * (pixels.shape[1] - size + 1))
    window = pixels[top : top + size, left : left + size]
    return window[:, ::-1] if flip_u < 0.5 else window


def test_fast_path_equals_the_pil_window_and_flip():
    config = AugmentConfig(size=128, crop="random", hflip=True)
    augment = Augmenter(config, train=True)
    flips = set()
    for seed in range(8):
        data = jpeg(170, 150, seed)
        got = augmented(augment, {"jpg": data}, np.random.default_rng(seed))
        flips.add(bool(np.random.default_rng(seed).random(3)[2] < 0.5))
        assert np.abs(got.astype(int) - pil_window(data, seed, 128).astype(int)).max() <= 2  # two libjpeg builds
    assert flips == {True, False}


def test_the_staging_buffer_grows_for_large_jpegs():
    augment = Augmenter(AugmentConfig(size=128), train=True)
    data = jpeg(400, 300, 3)
    got = augmented(augment, {"jpg": data}, np.random.default_rng(3))
    assert np.abs(got.astype(int) - pil_window(data, 3, 128).astype(int)).max() <= 2


def test_small_images_and_png_take_the_pil_path():
    augment = Augmenter(AugmentConfig(size=128), train=True)
    assert augmented(augment, {"jpg": jpeg(100, 90)}, np.random.default_rng(0)).shape == (128, 128, 3)
    buffer = io.BytesIO()
    Image.new("RGB", (140, 140), (10, 20, 30)).save(buffer, format="PNG")
    out = augmented(augment, {"png": buffer.getvalue()}, np.random.default_rng(0))
    assert out[0, 0].tolist() == [10, 20, 30] and (out == out[0, 0]).all()


def test_cmyk_jpeg_falls_back_to_pil():
    buffer = io.BytesIO()
    Image.new("CMYK", (140, 140), (0, 255, 255, 0)).save(buffer, format="JPEG", quality=95)
    out = augmented(Augmenter(AugmentConfig(size=128), train=True), {"jpg": buffer.getvalue()},
                    np.random.default_rng(0))
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))[0, 0]
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 2


@pytest.mark.parametrize("damage", ["truncated", "zeros", "empty"])
def test_undecodable_jpeg_is_a_value_error(damage):
    data = jpeg(160, 160)
    broken = {"truncated": data[: len(data) // 2], "zeros": b"\0" * len(data), "empty": b""}[damage]
    with pytest.raises(ValueError, match="cannot decode jpg"):
        augmented(Augmenter(AugmentConfig(size=128), train=True), {"jpg": bytearray(broken)},
                  np.random.default_rng(0))


def png16(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def mapped(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip(np.rint(255 * (pixels.astype(np.float64) - low) / (high - low)), 0, 255).astype(np.uint8)


SCAN = np.random.default_rng(5).integers(100, 4000, size=(40, 40), dtype=np.uint16)


@pytest.mark.parametrize("intensity, low, high", [
    ("minmax", SCAN.min(), SCAN.max()),
    ("window", 500.0, 2500.0),
    ("percentile", *np.percentile(SCAN.astype(np.float64), [2.0, 98.0])),
])
def test_16_bit_png_through_the_declared_mapping(intensity, low, high):
    config = AugmentConfig(size=40, crop="center", hflip=False, intensity=intensity,
                           intensity_window=(500.0, 2500.0), intensity_percentiles=(2.0, 98.0))
    out = augmented(Augmenter(config, train=False), {"png": png16(SCAN)}, np.random.default_rng(0))
    want = mapped(SCAN, low, high)
    assert all(np.array_equal(out[..., c], want) for c in range(3))  # grey replicated, never clipped at 255


def test_16_bit_png_random_window_for_training():
    config = AugmentConfig(size=32, crop="random", hflip=False)
    out = augmented(Augmenter(config, train=True), {"png": png16(SCAN)}, np.random.default_rng(4))
    top_u, left_u, _ = np.random.default_rng(4).random(3)
    top, left = int(top_u * 9), int(left_u * 9)
    assert np.array_equal(out[..., 0], mapped(SCAN, SCAN.min(), SCAN.max())[top : top + 32, left : left + 32])


def test_constant_16_bit_image_maps_to_black():
    out = augmented(Augmenter(AugmentConfig(size=8, crop="center"), train=False),
                    {"png": png16(np.full((8, 8), 3000, np.uint16))}, np.random.default_rng(0))
    assert not out.any()


@pytest.mark.parametrize("field, value", [("intensity_window", (10.0, 10.0)), ("intensity_window", (-1.0, 5.0)),
                                          ("intensity_percentiles", (50.0, 40.0)),
                                          ("intensity_percentiles", (0.0, 101.0))])
def test_intensity_ranges_are_checked(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value})


@pytest.mark.parametrize("crop", ["random", "random_resized", "center"])
def test_vertical_flips_mirror_the_window_half_the_time_after_the_same_crop(crop):
    fields = {"jpg": jpeg(60, 50)}
    plain = Augmenter(AugmentConfig(size=32, crop=crop, hflip=True), train=True)
    flipping = Augmenter(AugmentConfig(size=32, crop=crop, hflip=True, vflip=True), train=True)
    mirrored = 0
    for seed in range(20):
        base = augmented(plain, fields, np.random.default_rng(seed))
        out = augmented(flipping, fields, np.random.default_rng(seed))
        assert np.array_equal(out, base) or np.array_equal(out, base[::-1])
        mirrored += np.array_equal(out, base[::-1]) and not np.array_equal(base, base[::-1])
    assert 4 <= mirrored <= 16


def test_rotations_turn_the_window_about_its_centre_within_the_range():
    from torchvision.transforms.v2 import functional as F

    fields = {"jpg": jpeg(60, 50)}
    plain = Augmenter(AugmentConfig(size=32, crop="center"), train=True)
    turning = Augmenter(AugmentConfig(size=32, crop="center", rotation=10), train=True)
    def distance(base: np.ndarray, out: np.ndarray, angle: float) -> float:
        turned = np.asarray(F.rotate(Image.fromarray(base), angle, interpolation=F.InterpolationMode.BILINEAR))
        return float(np.abs(turned.astype(int) - out.astype(int)).mean())

    for seed in range(5):
        base = augmented(plain, fields, np.random.default_rng(seed))
        out = augmented(turning, fields, np.random.default_rng(seed))
        best = min(distance(base, out, angle) for angle in np.linspace(-10, 10, 401))
        assert best < 0.5 and best < min(distance(base, out, -30), distance(base, out, 30)) / 4
        assert not np.array_equal(out, base)
    assert np.array_equal(augmented(Augmenter(AugmentConfig(size=32, crop="center", rotation=10), train=False),
                                    fields, np.random.default_rng(0)),
                          augmented(Augmenter(AugmentConfig(size=32, crop="center"), train=False), fields,
                                    np.random.default_rng(0)))  # evaluation: never turned


def test_rotation_range_is_checked():
    with pytest.raises(ValueError, match=r"rotation must be in \[0, 180\] degrees, got 200"):
        AugmentConfig(rotation=200)
