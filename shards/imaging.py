"""Decode, describe, crop, resize and encode sample images (PIL), keeping lossless sources
lossless and 16-bit sources 16-bit."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".tif", ".tiff", ".webp"})
SIXTEEN_BIT = "I;16"
"""The PIL mode 16-bit greyscale is kept in (and written as 16-bit PNG)."""
HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
"""PIL modes of 16-bit greyscale sources: PNG and TIFF open as I;16*, 16-bit PGM as I."""
GREY_MODES = frozenset({"1", "L", "LA"})
SATURATED = 0.5
"""An image with more than this share of its pixel values at its maximum is flagged."""


class SampleError(Exception):
    """A source sample that cannot be used; the message is the reason recorded in the manifest."""


def decode(data: bytes) -> Image.Image:
    """Fully decode an image (truncated files fail here, not later) in the mode it is kept in:
    16-bit greyscale as I;16 with its range untouched (an RGB conversion clips every value
    over 255: raw MRI intensities, REFERENCE.md §6a, would saturate), 8-bit greyscale as L,
    everything else as RGB."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise SampleError("cannot decode image: not a recognised image format") from None
    except Exception as exc:  # PIL raises many types for truncated or corrupt data
        raise SampleError(f"cannot decode image: {exc}") from None
    image = ImageOps.exif_transpose(image)
    if image.mode in HIGH_DEPTH_MODES:
        return image if image.mode == SIXTEEN_BIT else sixteen_bit(np.asarray(image))
    if image.mode == "F":
        raise SampleError("cannot keep 32-bit float pixels: store them as 16-bit integers")
    return image.convert("L" if image.mode in GREY_MODES else "RGB")


def sixteen_bit(pixels: np.ndarray) -> Image.Image:
    """A 2-D integer array as a 16-bit greyscale image; SampleError if its values do not fit."""
    low, high = int(pixels.min()), int(pixels.max())
    if low < 0 or high > 65535:
        raise SampleError(f"intensities {low}..{high} do not fit 16-bit PNG")
    return Image.fromarray(pixels.astype(np.uint16))


def describe(image: Image.Image, min_size: int) -> dict[str, Any]:
    """What a sample's json and the manifest record of a decoded image: ``pixels`` (bit depth,
    channels, intensity range) and, only when it is worth a look, ``flags`` (the reasons)."""
    pixels = np.asarray(image)
    low, high = pixels.min(), pixels.max()
    flags = []
    if min(image.size) < min_size:
        flags.append(f"a side under {min_size} pixels (--min-size)")
    if low == high:
        flags.append("constant: every pixel has the same value")
    elif np.count_nonzero(pixels == high) > SATURATED * pixels.size:
        flags.append("saturated: over half of the pixel values at the image maximum")
    summary = {"bit_depth": 16 if image.mode == SIXTEEN_BIT else 8, "channels": len(image.getbands()),
               "min": int(low), "max": int(high)}
    return {"pixels": summary, **({"flags": flags} if flags else {})}


def tally_pixels(entries: Iterable[dict[str, int]]) -> list[dict[str, int]]:
    """Per (bit depth, channels): how many images and their overall intensity range.  Entries
    are images' ``pixels`` or earlier tallies (which carry ``samples``)."""
    kinds: dict[tuple[int, int], dict[str, int]] = {}
    for entry in entries:
        kind = kinds.setdefault((entry["bit_depth"], entry["channels"]), {
            "bit_depth": entry["bit_depth"], "channels": entry["channels"], "samples": 0,
            "min": entry["min"], "max": entry["max"]})
        kind["samples"] += entry.get("samples", 1)
        kind["min"], kind["max"] = min(kind["min"], entry["min"]), max(kind["max"], entry["max"])
    return [kinds[k] for k in sorted(kinds)]


def crop_box(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """Crop to (x, y, w, h), clamped to the image (VGGFace2 boxes can start at negative x/y)."""
    x, y, w, h = box
    left, top = max(0, round(x)), max(0, round(y))
    right, bottom = min(image.width, round(x + w)), min(image.height, round(y + h))
    if right - left < 2 or bottom - top < 2:
        raise SampleError(f"bounding box {box} lies outside the {image.width}x{image.height} image")
    return image.crop((left, top, right, bottom))


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """Bicubic, in the image's own mode: PIL resamples I;16 in 16 bits, so the range is kept."""
    scale = size / min(image.size)
    if scale == 1:
        return image
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(target, Image.Resampling.BICUBIC)


def centre_square(image: Image.Image, size: int) -> Image.Image:
    return ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)


def pad_to(image: Image.Image, width: int, height: int) -> Image.Image:
    """Pad (bottom/right, white like the slide background) up to width x height."""
    if image.width >= width and image.height >= height:
        return image
    white = 65535 if image.mode == SIXTEEN_BIT else (255,) * len(image.getbands())
    canvas = Image.new(image.mode, (max(width, image.width), max(height, image.height)), white)
    canvas.paste(image, (0, 0))
    return canvas


def encode(image: Image.Image, extension: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if extension == "jpg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def lossless_extension(source_suffix: str) -> str:
    """jpg stays jpg; every lossless source (png, pgm, bmp, tif) is written as png."""
    return "jpg" if source_suffix.lower() in (".jpg", ".jpeg") else "png"
