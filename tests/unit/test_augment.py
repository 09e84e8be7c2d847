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
