"""One face geometry from build to evaluation: the manifest's canvas, and evaluation windows that
show a face at the scale a training crop shows it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from shards.augment import Augmenter
from shards.geometry import describe_geometry, geometry_of, manifest_geometry, tally_sides
from shards.stream_config import AugmentConfig

RADIUS_AT_72 = 18.0  # the face's radius on the 72 px training canvas


def face(side: int, supersample: int = 8) -> bytes:
    """A bright disc (the face) centred on a dark canvas of ``side`` px, its radius RADIUS_AT_72
    scaled with the canvas: one scene stored at two resolutions.  PNG: no codec noise."""
    big = side * supersample
    image = Image.new("L", (big, big), 20)
    radius = RADIUS_AT_72 * side / 72 * supersample
    ImageDraw.Draw(image).ellipse([big / 2 - radius, big / 2 - radius, big / 2 + radius, big / 2 + radius], fill=230)
    buffer = io.BytesIO()
    image.resize((side, side), Image.Resampling.LANCZOS).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def window(augment: Augmenter, data: bytes, seed: int = 0) -> np.ndarray:
    out = np.zeros((augment.config.size, augment.config.size, 3), np.uint8)
    augment({"png": data}, np.random.default_rng(seed), out)
    return out


def disc_radius(pixels: np.ndarray) -> float:
    """The disc's radius from its area (pixels brighter than mid-grey)."""
    return float(np.sqrt((pixels[..., 0] > 125).sum() / np.pi))


CONFIG = AugmentConfig(size=64, crop="random", hflip=True)


def test_an_evaluation_image_shows_the_face_at_the_scale_of_a_training_crop():
    trained = [disc_radius(window(Augmenter(CONFIG, train=True), face(72), seed)) for seed in range(5)]
    assert trained == pytest.approx([RADIUS_AT_72] * 5, abs=0.3)  # windows never resample
    same_canvas = disc_radius(window(Augmenter(CONFIG, train=False, canvas=72), face(72)))
    larger_set = disc_radius(window(Augmenter(CONFIG, train=False, canvas=72), face(112)))  # a 112 px .bin
    assert same_canvas == pytest.approx(RADIUS_AT_72, abs=0.3)
    assert larger_set == pytest.approx(RADIUS_AT_72, abs=0.5)
    # what evaluation did before: the whole image resized to the window, a face 72/64 x larger
    resized = disc_radius(window(Augmenter(AugmentConfig(size=64, crop="center"), train=False), face(72)))
    assert resized == pytest.approx(RADIUS_AT_72 * 64 / 72, abs=0.3)


def test_the_evaluation_window_is_the_centre_of_the_stored_image_without_resampling():
    pixels = np.random.default_rng(0).integers(0, 255, (72, 80, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    out = window(Augmenter(CONFIG, train=False, canvas=72), buffer.getvalue())
    assert np.array_equal(out, pixels[4:68, 8:72])
    # no canvas declared (an older build): the image as stored
    assert np.array_equal(window(Augmenter(CONFIG, train=False), buffer.getvalue()), pixels[4:68, 8:72])


def test_images_smaller_than_the_window_are_brought_up_to_it():
    out = window(Augmenter(CONFIG, train=False, canvas=40), face(40))
    assert out.shape == (64, 64, 3) and disc_radius(out) == pytest.approx(RADIUS_AT_72 * 40 / 72 * 64 / 40, abs=0.5)


def test_the_manifest_declares_a_canvas_only_when_every_stored_image_shares_it():
    assert tally_sides([(72, 72), (72, 72)]) == {"min_side": 72, "max_side": 72, "square": True}
    assert tally_sides([(80, 72), {"min_side": 60, "max_side": 72, "square": True}]) == {
        "min_side": 60, "max_side": 72, "square": False}
    assert tally_sides([]) is None
    uniform = tally_sides([(112, 112)])
    assert manifest_geometry([uniform, uniform], "arcface112", None)["canvas"] == 112
    assert manifest_geometry([uniform, tally_sides([(100, 100)])], None, None)["canvas"] is None
    assert manifest_geometry([uniform, tally_sides([(112, 120)])], None, None)["canvas"] is None
    assert manifest_geometry([uniform, None], None, 112)["canvas"] is None  # a shard reused from an older build
    geometry = {"geometry": manifest_geometry([uniform], "arcface112", None)}
    assert geometry_of(geometry)["canvas"] == 112 and geometry_of(geometry)["template"] == "arcface112"
    assert geometry_of({}) == {} and geometry_of({"geometry": None}) == {}


def test_shards_stats_says_the_geometry_in_one_line():
    assert describe_geometry(manifest_geometry([tally_sides([(112, 112)])], "arcface112", None)) == (
        "geometry: canvas 112 px (every image 112x112); alignment template arcface112")
    assert describe_geometry(manifest_geometry([tally_sides([(80, 72), (250, 250)])], None, None)) == (
        "geometry: no common canvas (shorter sides 72..250 px, not all square); alignment template none")
    assert describe_geometry(manifest_geometry([None], None, None)) == (
        "geometry: sizes not recorded (shards kept from an older build); alignment template none")
