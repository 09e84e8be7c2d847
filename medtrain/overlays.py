"""Pictures of where the model looked: attention heat maps over the images, and an IDC patient's slide rebuilt
from its patches with the ground truth beside the predicted probability.

Pure functions of arrays (numpy or torch, any device); figures are ``matplotlib.figure.Figure`` saved through
Agg, as in ``medtrain.plots``.  Both figures are laid out in pixels, so every image lands on a known box of the
PNG: the slide panels show one canvas pixel per PNG pixel, with no second resampling.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image

from shards.formats.idc import NAME as IDC_NAME
from shards.formats.idc import PATCH as IDC_PATCH

DPI = 100
# Attention grid, in PNG pixels: each cell is a title strip over a square image box.
CELL_PX, PAD_PX, TITLE_PX, COLORBAR_PX = 256, 8, 36, 84
# Slide mosaic, in PNG pixels.
MARGIN_PX, GAP_PX, HEADER_PX, CAPTION_PX, SCALEBAR_PX, MIN_WIDTH_PX = 16, 40, 56, 26, 96, 760
TRUTH_TINT, TRUTH_ALPHA, OUTLINE = np.array([0.0, 0.85, 0.0]), 0.3, "black"


def prediction_title(true_name: str, predicted_name: str, probability: float) -> str:
    """The cell title the tasks use, e.g. ``true: glioma / pred: glioma 0.93``."""
    return f"true: {true_name} / pred: {predicted_name} {probability:.2f}"


def attention_overlays(
    images_BCHW: torch.Tensor | np.ndarray,
    heatmaps_Bhw: torch.Tensor | np.ndarray,
    titles: Sequence[str],
    path: str | Path,
    columns: int = 4,
    colormap: str = "jet",
    alpha: float = 0.45,
) -> Path:
    """A grid PNG: each image (uint8, or float in [0, 1]; 1 channel shown grey, or 3) with its heat map
    upsampled bilinearly to the image, scaled to its own [min, max] and blended over it in ``colormap``.

    Jet is the colour scale of the CAM and Grad-CAM figures (pytorch-grad-cam's ``show_cam_on_image``).  A
    flat map shows as one uniform colour and says so in its title; non-finite values count as the map's minimum.
    Models whose ``attention_heatmap`` is None have nothing to draw: skip them before calling."""
    images_BHW3 = _images_to_rgb(images_BCHW)
    B, H, W, _ = images_BHW3.shape
    heat_BHW, notes = _normalised_heatmaps(heatmaps_Bhw, (H, W))
    if len(heat_BHW) != B or len(titles) != B:
        raise ValueError(f"{B} images, {len(heat_BHW)} heat maps and {len(titles)} titles: one of each per image")
    colours = matplotlib.colormaps[colormap]
    blended_BHW3 = (1 - alpha) * images_BHW3 + alpha * colours(heat_BHW)[..., :3]

    columns = max(1, min(columns, B))
    rows = math.ceil(B / columns)
    cell_w, cell_h = CELL_PX + 2 * PAD_PX, TITLE_PX + CELL_PX + PAD_PX
    width, height = columns * cell_w + COLORBAR_PX, rows * cell_h
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    for index in range(B):
        row, column = divmod(index, columns)
        left, top = column * cell_w + PAD_PX, row * cell_h + TITLE_PX
        axes = figure.add_axes(_fraction(left, top, CELL_PX, CELL_PX, width, height))
        axes.imshow(blended_BHW3[index], interpolation="bilinear")
        axes.set_axis_off()
        lines = textwrap.wrap(titles[index] + notes[index], 44)
        text = "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")
        axes.set_title(text, fontsize=8, pad=3)
    bar = figure.add_axes(_fraction(columns * cell_w + 6, TITLE_PX, 14, CELL_PX, width, height))
    colorbar = figure.colorbar(ScalarMappable(Normalize(0, 1), colours), cax=bar, ticks=[0, 1])
    colorbar.ax.set_yticklabels(["min", "max"], fontsize=8)
    colorbar.set_label("attention, per image", fontsize=8)
    return _save(figure, path)


def parse_idc_name(name: str | Path) -> tuple[str, int, int, int]:
    """``(patient, x, y, cls)`` from ``<patient>_idx5_x<X>_y<Y>_class<C>.png`` (a name or a path); X, Y are
    the patch's top-left pixel in the slide (REFERENCE.md §6b)."""
    match = IDC_NAME.match(Path(name).name)
    if not match:
        raise ValueError(
            f"not an IDC patch name: {Path(name).name!r} (expected <patient>_idx5_x<X>_y<Y>_class<0|1>.png, "
            "e.g. 10253_idx5_x1351_y1101_class0.png)"
        )
    return match[1], int(match[2]), int(match[3]), int(match[4])


def slide_canvas(
    patches: Sequence[tuple[int, int, np.ndarray]],
    patch_size: int = IDC_PATCH,
    max_side: int = 1600,
    min_side: int = 400,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The patches pasted at their slide coordinates on a white canvas cropped to their bounding box and
    scaled so its longer side lies in [min_side, max_side] (1 when it already does).  Returns the canvas
    (h, w, 3) uint8, each patch's box (N, 4) as canvas ``left, top, right, bottom`` (right/bottom exclusive)
    and the scale.  A patch larger than ``patch_size`` is resized to it; a smaller one (a slide edge) keeps
    its size.  Scaled boxes are rounded edge by edge, so neighbouring patches tile without gaps."""
    if not patches:
        raise ValueError("no patches to place")
    images = [_patch_rgb(image, patch_size) for _, _, image in patches]
    x_N = np.array([x for x, _, _ in patches])
    y_N = np.array([y for _, y, _ in patches])
    w_N = np.array([image.shape[1] for image in images])
    h_N = np.array([image.shape[0] for image in images])
    x0, y0 = x_N.min(), y_N.min()
    extent = max((x_N + w_N).max() - x0, (y_N + h_N).max() - y0)
    scale = max_side / extent if extent > max_side else min_side / extent if extent < min_side else 1.0
    boxes_N4 = np.round(np.stack([x_N - x0, y_N - y0, x_N + w_N - x0, y_N + h_N - y0], 1) * scale).astype(int)
    boxes_N4[:, 2:] = np.maximum(boxes_N4[:, 2:], boxes_N4[:, :2] + 1)
    canvas = np.full((boxes_N4[:, 3].max(), boxes_N4[:, 2].max(), 3), 255, np.uint8)
    for (left, top, right, bottom), image in zip(boxes_N4, images, strict=True):
        if image.shape[:2] != (bottom - top, right - left):
            image = np.asarray(Image.fromarray(image).resize((right - left, bottom - top), Image.Resampling.BOX))
        canvas[top:bottom, left:right] = image
    return canvas, boxes_N4, scale


def slide_mosaic(
    patches: Sequence[tuple[int, int, np.ndarray]],
    probabilities: Sequence[float],
    labels: Sequence[int],
    patient: str,
    path: str | Path,
    patch_size: int = IDC_PATCH,
    max_side: int = 1600,
    threshold: float = 0.5,
    colormap: str = "coolwarm",
) -> Path:
    """One patient's slide rebuilt from its IDC patches ``(x, y, image)``: left the tissue with the IDC-positive
    patches (``labels`` 1) tinted green and outlined, right each patch coloured by its predicted IDC
    probability with a colour bar and the same outline.  The header gives the patient-level shares of positive
    patches, true and predicted (probability >= ``threshold``)."""
    probability_N = np.asarray(probabilities, float)
    label_N = np.asarray(labels)
    if not (len(patches) == len(probability_N) == len(label_N)):
        raise ValueError(
            f"patient {patient}: {len(patches)} patches, {len(probability_N)} probabilities and "
            f"{len(label_N)} labels: one of each per patch"
        )
    if not len(patches):
        raise ValueError(f"patient {patient}: no patches")
    bad = np.flatnonzero(~((probability_N >= 0) & (probability_N <= 1)))
    if len(bad):
        raise ValueError(f"patient {patient}: probability {probability_N[bad[0]]} of patch {bad[0]} is not in [0, 1]")
    if not np.isin(label_N, (0, 1)).all():
        raise ValueError(f"patient {patient}: labels must be 0 or 1, got {sorted(set(label_N.tolist()))}")

    canvas, boxes_N4, scale = slide_canvas(patches, patch_size, max_side)
    positive_hw = np.zeros(canvas.shape[:2], bool)
    colours = matplotlib.colormaps[colormap]
    predicted_hw3 = np.ones(canvas.shape, float)
    for (left, top, right, bottom), probability, label in zip(boxes_N4, probability_N, label_N, strict=True):
        positive_hw[top:bottom, left:right] |= bool(label)
        predicted_hw3[top:bottom, left:right] = colours(probability)[:3]
    truth_hw3 = canvas / 255.0
    truth_hw3[positive_hw] = (1 - TRUTH_ALPHA) * truth_hw3[positive_hw] + TRUTH_ALPHA * TRUTH_TINT

    boxes, width, height = mosaic_layout(canvas.shape[1], canvas.shape[0])
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    captions = {
        "truth": "ground truth: IDC-positive patches tinted and outlined",
        "prediction": "predicted IDC probability per patch (outline: ground truth)",
    }
    for name, picture in (("truth", truth_hw3), ("prediction", predicted_hw3)):
        axes = figure.add_axes(_fraction(*boxes[name], width, height))
        axes.imshow(picture, interpolation="nearest", extent=(0, canvas.shape[1], canvas.shape[0], 0))
        if positive_hw.any() and not positive_hw.all():
            axes.contour(
                np.arange(canvas.shape[1]) + 0.5,
                np.arange(canvas.shape[0]) + 0.5,
                positive_hw,
                levels=[0.5],
                colors=OUTLINE,
                linewidths=1.2,
            )
        axes.set(xticks=[], yticks=[], xlim=(0, canvas.shape[1]), ylim=(canvas.shape[0], 0))
        axes.set_title(captions[name], fontsize=10, pad=4)
    bar = figure.colorbar(
        ScalarMappable(Normalize(0, 1), colours), cax=figure.add_axes(_fraction(*boxes["colorbar"], width, height))
    )
    bar.set_label("predicted IDC probability", fontsize=9)
    true_share, predicted_share = label_N.mean(), (probability_N >= threshold).mean()
    shown = "" if scale == 1 else f", shown at 1 px = {1 / scale:.3g} slide px"
    figure.suptitle(
        f"patient {patient}: {len(label_N)} patches{shown}\n"
        f"IDC-positive patches: true {true_share:.1%} ({label_N.sum()}), predicted {predicted_share:.1%} "
        f"(p ≥ {threshold:g}); mean probability {probability_N.mean():.3f}",
        fontsize=12,
        y=1 - 6 / height,
        va="top",
    )
    return _save(figure, path)


def mosaic_layout(canvas_w: int, canvas_h: int) -> tuple[dict[str, tuple[int, int, int, int]], int, int]:
    """Pixel boxes ``left, top, width, height`` of the mosaic's ``truth`` and ``prediction`` panels (each the
    canvas at one PNG pixel per canvas pixel) and its ``colorbar``, and the PNG's width and height."""
    top = HEADER_PX + CAPTION_PX
    boxes = {
        "truth": (MARGIN_PX, top, canvas_w, canvas_h),
        "prediction": (MARGIN_PX + canvas_w + GAP_PX, top, canvas_w, canvas_h),
        "colorbar": (MARGIN_PX + 2 * canvas_w + GAP_PX + 14, top, 16, canvas_h),
    }
    width = max(MIN_WIDTH_PX, MARGIN_PX + 2 * canvas_w + GAP_PX + SCALEBAR_PX)
    return boxes, width, top + canvas_h + MARGIN_PX


def _images_to_rgb(images_BCHW: torch.Tensor | np.ndarray) -> np.ndarray:
    """(B, H, W, 3) float64 in [0, 1]; one channel repeated to grey."""
    images = torch.as_tensor(images_BCHW).detach().cpu()
    if images.ndim != 4 or images.shape[1] not in (1, 3) or not len(images):
        raise ValueError(f"images must be (B >= 1, 1 or 3, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        images = images.double() / 255
    else:
        images = images.double()
        low, high = images.min().item(), images.max().item()
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"float images must lie in [0, 1], got [{low:.3g}, {high:.3g}]: undo the normalisation")
    return images.clamp(0, 1).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()


def _normalised_heatmaps(heatmaps_Bhw: torch.Tensor | np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, list]:
    """Each map upsampled (bilinear) to ``size`` and scaled to [0, 1]; flat maps all 0.  Also a title note
    per map ("" when there is nothing to say)."""
    heat = torch.as_tensor(heatmaps_Bhw).detach().cpu().double().clone()  # filled in place below
    if heat.ndim == 4 and heat.shape[1] == 1:
        heat = heat[:, 0]
    if heat.ndim != 3:
        raise ValueError(f"heat maps must be (B, h, w), got shape {tuple(heat.shape)}")
    notes = []
    for index, one in enumerate(heat):
        finite = torch.isfinite(one)
        note = "" if finite.all() else " (non-finite values)"
        heat[index] = torch.where(finite, one, one[finite].min() if finite.any() else 0.0)
        notes.append(note)
    heat = F.interpolate(heat[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    low = heat.amin((1, 2), keepdim=True)
    span = heat.amax((1, 2), keepdim=True) - low
    flat = span <= 1e-12 * torch.maximum(low.abs(), torch.ones_like(low))
    heat = torch.where(flat, torch.zeros_like(heat), (heat - low) / torch.where(flat, torch.ones_like(span), span))
    notes = [note + (" (flat map)" if is_flat else "") for note, is_flat in zip(notes, flat.flatten(), strict=True)]
    return heat.clamp(0, 1).numpy(), notes


def _patch_rgb(image: np.ndarray, patch_size: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2 or image.shape[-1] == 1:
        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, 2)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"patches must be (h, w, 3) uint8 images, got {image.dtype} {image.shape}")
    if image.shape[0] > patch_size or image.shape[1] > patch_size:
        image = np.asarray(Image.fromarray(image).resize((patch_size, patch_size), Image.Resampling.BOX))
    return image


def _fraction(left: int, top: int, box_w: int, box_h: int, width: int, height: int) -> list[float]:
    """A pixel box (top-left origin) as matplotlib's figure fractions (bottom-left origin)."""
    return [left / width, 1 - (top + box_h) / height, box_w / width, box_h / height]


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path
