"""Decode, crop, resize and encode sample images (PIL), keeping lossless sources lossless."""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".tif", ".tiff"})


class SampleError(Exception):
    """A source sample that cannot be used; the message is the reason recorded in the manifest."""


def decode(data: bytes) -> Image.Image:
    """Fully decode an image (truncated files fail here, not later) as RGB."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise SampleError("cannot decode image: not a recognised image format") from None
    except Exception as exc:  # PIL raises many types for truncated or corrupt data
        raise SampleError(f"cannot decode image: {exc}") from None
    return ImageOps.exif_transpose(image).convert("RGB")


def crop_box(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """Crop to (x, y, w, h), clamped to the image (VGGFace2 boxes can start at negative x/y)."""
    x, y, w, h = box
    left, top = max(0, round(x)), max(0, round(y))
    right, bottom = min(image.width, round(x + w)), min(image.height, round(y + h))
    if right - left < 2 or bottom - top < 2:
        raise SampleError(f"bounding box {box} lies outside the {image.width}x{image.height} image")
    return image.crop((left, top, right, bottom))


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    scale = size / min(image.size)
    if scale == 1:
        return image
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(target, Image.Resampling.BICUBIC)


def centre_square(image: Image.Image, size: int) -> Image.Image:
    return ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)


def pad_to(image: Image.Image, width: int, height: int, fill=(255, 255, 255)) -> Image.Image:
    """Pad (bottom/right, white like the slide background) up to width x height."""
    if image.width >= width and image.height >= height:
        return image
    canvas = Image.new(image.mode, (max(width, image.width), max(height, image.height)), fill)
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
