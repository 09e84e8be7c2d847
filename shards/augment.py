"""Decoding and augmentation of stream samples into uint8 (H, W, 3) images.

The training default is FaceNet's own augmentation: a random ``size`` x ``size`` window (no
resampling) and a horizontal flip. For JPEG samples that is a fast path: libjpeg-turbo through
simplejpeg, decoding into a staging buffer the augmenter keeps (no allocation per image), and
the window copied once into the caller's batch.  A flipped window costs no extra pass over the
pixels' channels: the image is decoded as BGR, and a BGR row read backwards byte by byte is
the mirrored RGB row.  Batches are NHWC in memory: an HWC window is 144 contiguous rows, an
NCHW one a strided gather (2.5 against 18 us per 144x144 image).  Everything else (PNG,
resampling crops, colour jitter, images smaller than the window, JPEGs turbojpeg refuses,
evaluation) goes through PIL and torchvision.transforms.v2.  16-bit greyscale PNGs (MRI,
REFERENCE.md §6a) are mapped to uint8 once, at decoding, by the configured intensity mapping;
everything after that is the 8-bit path.

Measured on the 2-core CPU machine, per 160x160 image: simplejpeg into a kept buffer 0.100 ms,
torchcodec's decode_jpeg 0.125 ms (same pixels), PIL 0.156 ms; float normalisation 0.4 ms, and
float batches are 4x the bytes of uint8 through the workers' shared memory and the host-to-device
copy, so workers emit uint8 and ``normalize_batch`` runs on the consumer's device.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import simplejpeg
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from shards.imaging import HIGH_DEPTH_MODES
from shards.items import IMAGE_FIELDS
from shards.stream_config import AugmentConfig

NORMALIZATION = {
    # FaceNet's fixed_image_standardization: (x - 127.5) / 128
    "facenet": ([127.5] * 3, [128.0] * 3),
    "imagenet": ([0.485 * 255, 0.456 * 255, 0.406 * 255], [0.229 * 255, 0.224 * 255, 0.225 * 255]),
}


DEFAULT_AUGMENT = AugmentConfig()


def decode_image(fields: dict, size_hint: int | None = None, config: AugmentConfig = DEFAULT_AUGMENT) -> Image.Image:
    """The RGB image of a sample's jpg or png bytes; ValueError if undecodable.  With a size
    hint, JPEG draft mode decodes at a power-of-two reduction no smaller than the hint.  A
    16-bit image goes through ``config``'s intensity mapping (``to_uint8``), its grey
    replicated to three channels."""
    name = next((f for f in IMAGE_FIELDS if f in fields), None)
    if name is None:
        raise ValueError("no jpg or png field")
    try:
        image = Image.open(io.BytesIO(fields[name]))
        if size_hint and image.format == "JPEG":
            image.draft("RGB", (size_hint, size_hint))
        image.load()
        if image.mode in HIGH_DEPTH_MODES:  # convert("RGB") would clip every value over 255
            image = Image.fromarray(to_uint8(np.asarray(image), config))
        return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot decode {name}: {exc}") from None


def to_uint8(pixels: np.ndarray, config: AugmentConfig) -> np.ndarray:
    """High-depth intensities -> uint8: round(255 * (x - low) / (high - low)) clipped to 0..255,
    [low, high] from the configured mapping (an image with high == low maps to 0, or 255 above)."""
    values = pixels.astype(np.float64)
    if config.intensity == "minmax":
        low, high = values.min(), values.max()
    elif config.intensity == "window":
        low, high = config.intensity_window
    else:
        low, high = np.percentile(values, config.intensity_percentiles)
    if high <= low:
        return np.where(values > low, 255, 0).astype(np.uint8)
    return np.clip(np.rint(255 * (values - low) / (high - low)), 0, 255).astype(np.uint8)


class Augmenter:
    """Writes a sample's augmented image into a (size, size, 3) uint8 array, with randomness
    from the generator it is given."""

    def __init__(self, config: AugmentConfig, train: bool, canvas: int | None = None):
        """Evaluation (``train`` False) of a random-window config takes the centre window of
        the image brought to ``canvas`` pixels (the training shards' side, shards/geometry.py):
        faces at the scale a training crop shows them; other configs resize and centre-crop."""
        self.config, self.train, self.canvas = config, train, canvas
        self.crop = config.crop if train else "centre_window" if config.crop == "random" else "center"
        self.flips = train and config.hflip
        self.jitter = train and config.color_jitter
        self._staging = np.empty(256 * 256 * 3, dtype=np.uint8)  # grows to the largest JPEG seen

    def __call__(self, fields: dict, rng: np.random.Generator, out: np.ndarray) -> None:
        if self.crop == "random":
            self._window(fields, rng, out)
        elif self.crop == "centre_window":
            self._centre_window(fields, out)
        else:
            self._resampled(fields, rng, out)
        if self.train:  # drawn after the crop's draws: configs without them keep their streams
            self._turned(rng, out)

    def _turned(self, rng: np.random.Generator, out: np.ndarray) -> None:
        """The window mirrored top-bottom (vflip) and rotated about its centre (rotation)."""
        if self.config.vflip and rng.random() < 0.5:
            out[:] = out[::-1].copy()
        if self.config.rotation:
            angle = float(rng.uniform(-self.config.rotation, self.config.rotation))
            out[:] = np.asarray(F.rotate(Image.fromarray(out), angle, interpolation=F.InterpolationMode.BILINEAR))

    def _window(self, fields: dict, rng: np.random.Generator, out: np.ndarray) -> None:
        """FaceNet's random window and horizontal flip, on the fast path when it can."""
        top_u, left_u, flip_u = rng.random(3).tolist()  # one draw per sample, in this order
        flip = self.flips and flip_u < 0.5
        pixels, bgr = None, False
        if "jpg" in fields and not self.jitter:
            # on failure PIL below says what is wrong, or decodes what turbojpeg refuses (CMYK...)
            with contextlib.suppress(ValueError):
                pixels, bgr = self._decode_jpeg(fields["jpg"], "BGR" if flip else "RGB"), flip
        if pixels is None or min(pixels.shape[:2]) < self.config.size:
            pixels, bgr = self._pil_pixels(fields, rng), False
        size = self.config.size
        top, left = int(top_u * (pixels.shape[0] - size + 1)), int(left_u * (pixels.shape[1] - size + 1))
        write_window(pixels[top : top + size, left : left + size], out, flip, bgr)

    def _centre_window(self, fields: dict, out: np.ndarray) -> None:
        """The window a random crop would take on average: centred, on the training canvas."""
        image, size = decode_image(fields, None, self.config), self.config.size
        side = max(self.canvas or min(image.size), size)
        if min(image.size) != side:
            image = F.resize(image, side, antialias=True)
        pixels = np.asarray(image)
        top, left = (pixels.shape[0] - size) // 2, (pixels.shape[1] - size) // 2
        write_window(pixels[top : top + size, left : left + size], out, flip=False, bgr=False)

    def _decode_jpeg(self, data: bytes | bytearray, colorspace: str) -> np.ndarray:
        try:
            return decode_jpeg_into(data, self._staging, colorspace)
        except ValueError:
            height, width = simplejpeg.decode_jpeg_header(data)[:2]  # ValueError if not a JPEG at all
            if height * width * 3 <= self._staging.size:
                raise
            self._staging = np.empty(height * width * 3, dtype=np.uint8)
            return decode_jpeg_into(data, self._staging, colorspace)

    def _pil_pixels(self, fields: dict, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) RGB, at least ``size`` on its short side, colour-jittered when configured."""
        image = decode_image(fields, self.config.size, self.config)
        if min(image.size) < self.config.size:
            image = F.resize(image, self.config.size)
        return np.array(self._jittered(image, rng))

    def _resampled(self, fields: dict, rng: np.random.Generator, out: np.ndarray) -> None:
        """random_resized (a random area in crop_scale, resampled) or center (no randomness)."""
        size, config = self.config.size, self.config
        image = decode_image(fields, size, config)
        if self.crop == "random_resized":
            width, height = image.size
            area = rng.uniform(*config.crop_scale) * width * height
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            w, h = min(width, round(np.sqrt(area * aspect))), min(height, round(np.sqrt(area / aspect)))
            top, left = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
            image = F.resized_crop(image, top, left, h, w, [size, size], antialias=True)
        else:
            image = F.center_crop(F.resize(image, size), [size, size])
        write_window(np.array(self._jittered(image, rng)), out, self.flips and rng.random() < 0.5, bgr=False)

    def _jittered(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if not self.jitter:
            return image
        low, high = 1 - self.config.color_jitter, 1 + self.config.color_jitter
        image = F.adjust_brightness(image, rng.uniform(low, high))
        image = F.adjust_contrast(image, rng.uniform(low, high))
        return F.adjust_saturation(image, rng.uniform(low, high))


def decode_jpeg_into(data: bytes | bytearray, staging: np.ndarray, colorspace: str = "RGB") -> np.ndarray:
    """(H, W, 3) uint8 pixels of JPEG bytes, a view of ``staging`` (uint8, at least H*W*3 long):
    libjpeg-turbo through simplejpeg, no allocation.  ValueError if undecodable or too big."""
    return simplejpeg.decode_jpeg(data, colorspace=colorspace, buffer=staging)


def write_window(window: np.ndarray, out: np.ndarray, flip: bool, bgr: bool) -> None:
    """Copy an (S, S, 3) window into ``out`` as RGB, mirrored when ``flip``; ``bgr``: the
    window holds BGR pixels (only with flip: a BGR row read backwards byte by byte is the
    mirrored RGB row, one flat reverse instead of a per-pixel one)."""
    if not flip:
        out[...] = window
    elif bgr:
        size = out.shape[0]
        rows = torch.from_numpy(window.reshape(size, size * 3))  # a view: each window row is contiguous
        torch.from_numpy(out.reshape(size, size * 3)).copy_(rows.flip(1))
    else:
        torch.from_numpy(out).copy_(torch.from_numpy(window).flip(1))


def channels_first(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) -> (B, 3, H, W), a view: the consumer's shape, channels-last in memory."""
    return images.permute(0, 3, 1, 2)


def stack_images(images: list[np.ndarray]) -> torch.Tensor:
    """(B, 3, H, W) uint8 (channels-last in memory) from (H, W, 3) arrays."""
    return channels_first(torch.from_numpy(np.stack(images)))


def normalize_batch(images: torch.Tensor, config: AugmentConfig, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> normalised contiguous floats, on whatever device the batch is on."""
    images = images.to(dtype, memory_format=torch.contiguous_format)
    if config.normalize == "none":
        return images / 255
    mean, std = (torch.tensor(v, dtype=dtype, device=images.device).view(1, 3, 1, 1)
                 for v in NORMALIZATION[config.normalize])
    return (images - mean) / std
