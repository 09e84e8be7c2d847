"""insightface evaluation sets (REFERENCE.md §11.2): one ``.bin`` file -> an evaluation set in
the ``lfw-pairs`` layout, so the face task's pair reader evaluates it unchanged.

A ``.bin`` is a pickle of ``(bins, issame_list)``: ``bins`` holds 2·N encoded images (JPEG or
PNG), pair i is ``(bins[2i], bins[2i+1])`` and ``issame_list[i]`` says whether both show one
person.  Files written by Python 2 hold the images as py2 ``str``, which Python 3 reads only with
``encoding='bytes'``; some hold numpy byte arrays.  No MXNet: PIL decodes, and the encoded bytes
are stored as they are.  A .bin carries no identities, so every image gets one shared label and
its pair as group (a split by groups never separates a pair).  Folds are insightface's: 10
consecutive blocks (scikit-learn ``KFold(10, shuffle=False)`` in its ``eval/verification.py``).
"""

from __future__ import annotations

import functools
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from shards.imaging import SampleError, decode
from shards.items import MAX_KEY, ScanResult, Skip, SourceItem, make_key
from shards.options import BuildOptions
from shards.render import render_bytes

LABEL = "unknown"
"""The one label of every image: a .bin says which images pair up, never who is in them."""
NUM_FOLDS = 10
JPEG, PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
ALLOWED_GLOBALS = frozenset({
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
    ("builtins", "bytearray"), ("__builtin__", "bytearray"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),  # numpy bools
})
"""Unpickling runs whatever a pickle names; a .bin needs only these to hold images and booleans."""


class _ImagesOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a .bin of images never does")
        return super().find_class(module, name)


def read_pickle(data: bytes) -> Any:
    """The unpickled object: as Python 3 wrote it, else as Python 2 did (py2 ``str`` -> bytes)."""
    try:
        return _ImagesOnly(io.BytesIO(data)).load()
    except UnicodeDecodeError:
        return _ImagesOnly(io.BytesIO(data), encoding="bytes").load()


@functools.lru_cache(maxsize=1)  # scan and every sample of a worker read the same file
def _load(path: str, mtime_ns: int, size: int) -> tuple[list, list[bool]]:
    try:
        content = read_pickle(Path(path).read_bytes())
    except Exception as exc:  # unpickling bytes that are no pickle raises many types
        raise ValueError(f"not an insightface .bin (a pickle of (bins, issame_list)): {one_line(exc)}") from None
    if not (isinstance(content, (tuple, list)) and len(content) == 2):
        raise ValueError(f"holds a {type(content).__name__}, not the pair (bins, issame_list)")
    bins, issame = content
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple, np.ndarray)):
        raise ValueError(f"holds ({type(bins).__name__}, {type(issame).__name__}), "
                         "not (a list of images, a list of booleans)")
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{len(bins)} images for {len(issame)} pairs: a .bin holds two per pair")
    if len(issame) < NUM_FOLDS:
        raise ValueError(f"{len(issame)} pairs: insightface's {NUM_FOLDS} folds need at least {NUM_FOLDS}")
    return list(bins), [_boolean(value, i) for i, value in enumerate(issame)]


def load_bin(path: Path) -> tuple[list, list[bool]]:
    """(bins, issame_list) of a .bin; ValueError (one line) for anything else."""
    status = path.stat()
    return _load(str(path), status.st_mtime_ns, status.st_size)


def _boolean(value: Any, index: int) -> bool:
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"issame_list[{index}] is {value!r}, not a boolean")


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def encoded(value: Any) -> bytes:
    """The encoded image bytes of one ``bins`` entry; SampleError if it holds none."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, np.ndarray) and value.dtype in (np.uint8, np.int8) and value.ndim == 1:
        return value.tobytes()
    raise SampleError(f"not encoded image bytes ({type(value).__name__})")


def fold_of(pair: int, num_pairs: int) -> int:
    """insightface's fold of a pair: ``KFold(10)`` without shuffling, whose first
    ``num_pairs % 10`` folds hold one pair more (every published set divides evenly)."""
    size, larger = divmod(num_pairs, NUM_FOLDS)
    boundary = larger * (size + 1)
    return pair // (size + 1) if pair < boundary else larger + (pair - boundary) // size


def scan_insightface_bin(src: Path, options: BuildOptions) -> ScanResult:
    if options.align != "none":
        raise ValueError("its images are already aligned (112x112, ArcFace template): build without --align")
    bins, issame = load_bin(src)
    set_name = make_key(src.name)  # lfw.bin -> lfw
    width = len(str(len(issame) - 1))  # zero-padded: key order is file order, so --limit keeps whole pairs
    set_name = set_name[: MAX_KEY - width - 3]
    items, skipped, pairs, dropped = [], [], [], 0
    for pair, same in enumerate(issame):
        indices = (2 * pair, 2 * pair + 1)
        problems = [_problem(bins[index]) for index in indices]
        if any(problems):
            dropped += 1
            for position, (index, problem) in enumerate(zip(indices, problems, strict=True)):
                other = indices[1 - position]
                skipped.append(Skip(f"{src}:bins[{index}]", problem or (
                    f"pair {pair} (fold {fold_of(pair, len(issame)) + 1}) dropped: "
                    f"its other image bins[{other}] does not decode")))
            continue
        if options.limit is not None and len(items) + 2 > options.limit:
            break
        for position, index in enumerate(indices):
            items.append(SourceItem(
                f"{set_name}_{pair:0{width}d}_{position}", f"{src}:bins[{index}]", LABEL,
                f"{set_name}_{pair:0{width}d}", len(encoded(bins[index])),
                {"source": f"{src.name}:bins[{index}]", "official_split": "test", "pair": pair,
                 "bin_index": index}))
        pairs.append({"fold": fold_of(pair, len(issame)), "same": same, "a": items[-2].meta["source"],
                      "b": items[-1].meta["source"], "index": pair})
    return ScanResult(items, skipped, extra={"pairs": pairs, "pairs_in_file": len(issame),
                                             "pairs_dropped": dropped})


def _problem(value: Any) -> str | None:
    """Why one image cannot be used, or None: the scan decodes every image, so a pair with one
    that does not decode leaves the set here rather than after the shards are written."""
    try:
        decode(encoded(value))
    except SampleError as exc:
        return str(exc)
    return None


def render_bin_image(item: SourceItem, options: BuildOptions, aligner: Any) -> tuple[dict[str, bytes], dict]:
    """The image as the .bin holds it (JPEG or PNG, bit for bit), re-encoded only for --size or
    another format (then losslessly as PNG)."""
    bins, _ = load_bin(options.src)
    data = encoded(bins[item.meta["bin_index"]])
    suffix = ".jpg" if data.startswith(JPEG) else ".png" if data.startswith(PNG) else ".bin"  # .bin: re-encoded
    return render_bytes(data, suffix, item, options, aligner)
