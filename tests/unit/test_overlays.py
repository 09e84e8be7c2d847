"""Attention overlays and the IDC slide mosaic, checked on the saved PNGs read back with PIL."""

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from medtrain.overlays import (
    CELL_PX,
    COLORBAR_PX,
    PAD_PX,
    TITLE_PX,
    attention_overlays,
    mosaic_layout,
    parse_idc_name,
    slide_canvas,
    slide_mosaic,
)


def read_png(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def image_box(png, index, columns):
    """The pixels of cell ``index``'s image."""
    row, column = divmod(index, columns)
    left, top = column * (CELL_PX + 2 * PAD_PX) + PAD_PX, row * (TITLE_PX + CELL_PX + PAD_PX) + TITLE_PX
    return png[top : top + CELL_PX, left : left + CELL_PX]


def corner_square(size=8, side=3):
    heat = np.zeros((size, size), np.float32)
    heat[:side, :side] = 5.0  # hot top-left corner
    return heat


def test_overlay_grid_size_content_and_hot_corner(tmp_path):
    images = torch.full((5, 1, 64, 64), 0.5)  # greyscale float images
    images[:, :, 20:40, 20:40] = 0.9
    heat = torch.from_numpy(np.stack([corner_square()] * 5))
    heat[0, 7, 7] = float("nan")  # counts as the map's minimum: the cold corner stays cold
    path = attention_overlays(
        images,
        heat,
        [f"true: glioma / pred: glioma 0.9{i}" for i in range(5)],
        tmp_path / "sub" / "overlay.png",
        columns=3,
    )
    png = read_png(path)
    assert png.shape[:2] == (2 * (TITLE_PX + CELL_PX + PAD_PX), 3 * (CELL_PX + 2 * PAD_PX) + COLORBAR_PX)
    assert png.std() > 20
    jet = matplotlib.colormaps["jet"]
    for index in range(5):
        cell = image_box(png, index, 3)
        hot, cold = cell[: CELL_PX // 5, : CELL_PX // 5], cell[-CELL_PX // 3 :, -CELL_PX // 3 :]
        assert (hot[..., 0] - hot[..., 2]).mean() > 40 and (cold[..., 2] - cold[..., 0]).mean() > 40
        # grey 0.5 blended at alpha 0.45 with the warmest and the coldest colour, exactly
        for region, value in ((hot, 1.0), (cold, 0.0)):
            expected = 255 * (0.55 * 0.5 + 0.45 * np.array(jet(value)[:3]))
            assert np.abs(region.reshape(-1, 3).mean(0) - expected).max() < 2
    assert image_box(png, 5, 3).min() == 255  # the sixth cell is empty


def test_overlay_flat_and_non_finite_maps_show_uniform(tmp_path):
    images = np.full((2, 3, 40, 48), 128, np.uint8)  # uint8 RGB, not square: letterboxed in the cell
    heat = np.stack([np.full((5, 6), 0.25), np.full((5, 6), np.nan)])  # flat, and nothing finite
    path = attention_overlays(images, heat, ["flat", "nan"], tmp_path / "flat.png", columns=2)
    png = read_png(path)
    expected = 0.55 * 128 + 0.45 * 255 * np.array(matplotlib.colormaps["jet"](0.0)[:3])
    for index in range(2):
        middle = image_box(png, index, 2)[CELL_PX // 4 : -CELL_PX // 4, CELL_PX // 4 : -CELL_PX // 4]
        assert np.abs(middle - expected).max() <= 1  # one colour everywhere
    assert np.isnan(heat[1]).all()  # the caller's array is left alone


def test_overlay_rgb_images_are_not_blank(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    path = attention_overlays(images, torch.rand(2, 4, 4), ["a", "b"], tmp_path / "rgb.png")
    cell = image_box(read_png(path), 1, 2)
    assert cell.std() > 20 and png_size(path) == (2 * (CELL_PX + 2 * PAD_PX) + COLORBAR_PX, TITLE_PX + CELL_PX + PAD_PX)


def png_size(path):
    return Image.open(path).size


def test_overlay_refuses_normalised_images_and_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="undo the normalisation"):
        attention_overlays(torch.randn(1, 3, 8, 8) * 2, torch.rand(1, 2, 2), ["x"], tmp_path / "a.png")
    with pytest.raises(ValueError, match="one of each per image"):
        attention_overlays(torch.rand(2, 3, 8, 8), torch.rand(2, 2, 2), ["x"], tmp_path / "a.png")


def test_parse_idc_name():
    assert parse_idc_name("10253_idx5_x1351_y1101_class0.png") == ("10253", 1351, 1101, 0)
    assert parse_idc_name("/data/IDC/8863/1/8863_idx5_x2001_y1_class1.png") == ("8863", 2001, 1, 1)
    for bad in ("10253_idx5_x1351_y1101_class2.png", "10253_x1351_y1101_class0.png", "a_idx5_x1_y1_class0.png"):
        with pytest.raises(ValueError, match=r"not an IDC patch name.*expected <patient>_idx5"):
            parse_idc_name(bad)


def synthetic_slide(columns=10, rows=6, marker=(7, 2)):
    """Grey patches on a grid whose slide coordinates start at (1001, 501); one pure blue marker patch."""
    patches, labels = [], []
    for row in range(rows):
        for column in range(columns):
            image = np.full((50, 50, 3), 200, np.uint8)
            if (column, row) == marker:
                image[:] = (0, 0, 255)
            patches.append((1001 + 50 * column, 501 + 50 * row, image))
            labels.append(int(column < 3))
    return patches, labels


def test_slide_canvas_places_and_downscales_patches():
    patches, _ = synthetic_slide()
    canvas, boxes, scale = slide_canvas(patches, max_side=200, min_side=10)
    assert scale == pytest.approx(200 / 500) and canvas.shape == (120, 200, 3)
    # marker (column 7, row 2) at slide (1351, 601) -> canvas (350, 100) * 0.4 = (140, 40), 20 px wide
    assert tuple(canvas[40:60, 140:160].reshape(-1, 3).min(0)) == (0, 0, 255)
    assert tuple(canvas[40:60, 140:160].reshape(-1, 3).max(0)) == (0, 0, 255)
    assert tuple(canvas[70, 140]) == (200, 200, 200)
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    # a smaller edge patch keeps its own size; empty canvas stays white
    edge = [(1, 1, np.zeros((50, 50, 3), np.uint8)), (201, 1, np.zeros((30, 40, 3), np.uint8))]
    canvas, _, scale = slide_canvas(edge, min_side=10)
    assert scale == 1 and canvas.shape == (50, 240, 3)
    assert canvas[29, 239].max() == 0 and canvas[30, 239].min() == 255 and canvas[:, 50:200].min() == 255


def test_slide_mosaic_shows_the_patch_and_its_probability(tmp_path):
    patches, labels = synthetic_slide()
    probabilities = [0.05] * len(patches)
    marker_index = 2 * 10 + 7
    probabilities[marker_index] = 0.95
    path = slide_mosaic(patches, probabilities, labels, "10253", tmp_path / "mosaic.png")
    png = read_png(path)
    canvas, boxes, _ = slide_canvas(patches)
    panels, width, height = mosaic_layout(canvas.shape[1], canvas.shape[0])
    assert png.shape[:2] == (height, width)
    left, top, right, bottom = boxes[marker_index]
    middle_x, middle_y = (left + right) // 2, (top + bottom) // 2
    truth_left, truth_top, _, _ = panels["truth"]
    assert tuple(png[truth_top + middle_y, truth_left + middle_x]) == (0, 0, 255)
    coolwarm = matplotlib.colormaps["coolwarm"]
    predicted_left, predicted_top, _, _ = panels["prediction"]
    for index, probability in ((marker_index, 0.95), (0, 0.05)):
        left, top, right, bottom = boxes[index]
        pixel = png[predicted_top + (top + bottom) // 2, predicted_left + (left + right) // 2]
        assert np.abs(pixel - 255 * np.array(coolwarm(probability)[:3])).max() <= 2
    # positives (first three columns) are tinted green on the truth panel, negatives not
    left, top, right, bottom = boxes[0]
    tinted = png[truth_top + (top + bottom) // 2, truth_left + (left + right) // 2]
    assert tinted[1] > tinted[0] + 30 and tinted[1] > tinted[2] + 30


def test_slide_mosaic_refuses_bad_inputs(tmp_path):
    patches, labels = synthetic_slide(2, 1)
    with pytest.raises(ValueError, match=r"patient 7: probability 1\.5 of patch 1"):
        slide_mosaic(patches, [0.1, 1.5], labels, "7", tmp_path / "m.png")
    with pytest.raises(ValueError, match="one of each per patch"):
        slide_mosaic(patches, [0.1], labels, "7", tmp_path / "m.png")
