"""The training augmentation's JPEG fast path (torchcodec decode, window and flip as a view)
against an independent PIL computation of the same window and flip."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shards.augment import AugmentConfig, Augmenter, decode_jpeg_array


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    coarse.resize((width, height), Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("seed", range(6))
def test_fast_path_equals_the_pil_window_and_flip(seed):
    data = jpeg(170, 150, seed)
    config = AugmentConfig(size=128, crop="random", hflip=True)
    got = Augmenter(config, train=True)({"jpg": data}, np.random.default_rng(seed))
    draws = np.random.default_rng(seed)  # the same draws, in the documented order: top, left, flip
    top, left, flip = int(draws.integers(150 - 128 + 1)), int(draws.integers(170 - 128 + 1)), draws.random() < 0.5
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[top : top + 128, left : left + 128]
    expected = expected[:, ::-1] if flip else expected
    assert got.shape == (3, 128, 128)
    assert np.abs(got.astype(int) - expected.transpose(2, 0, 1).astype(int)).max() <= 2  # two libjpeg builds


def test_small_images_and_png_take_the_pil_path():
    augment = Augmenter(AugmentConfig(size=128), train=True)
    assert augment({"jpg": jpeg(100, 90)}, np.random.default_rng(0)).shape == (3, 128, 128)  # resized up first
    buffer = io.BytesIO()
    Image.new("RGB", (140, 140), (10, 20, 30)).save(buffer, format="PNG")
    out = augment({"png": buffer.getvalue()}, np.random.default_rng(0))
    assert out.shape == (3, 128, 128) and out[:, 0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("damage", ["truncated", "zeros"])
def test_undecodable_jpeg_is_a_value_error(damage):
    data = jpeg(160, 160)
    broken = data[: len(data) // 2] if damage == "truncated" else b"\0" * len(data)
    with pytest.raises(ValueError, match="cannot decode jpg"):
        decode_jpeg_array(broken)
