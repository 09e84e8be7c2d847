"""Duplicate images, found before the shards are planned: the same source bytes (sha256), and
optionally the same picture saved again (another JPEG quality, a PNG copy, a resize), found by
a 64-bit perceptual hash (pHash: Krawetz, "Looks like it", 2011) within a Hamming distance.

The hashes are taken in a pass of their own over the sources, after the scan and before the
shards are planned, because ``--duplicates drop`` must change the plan (the plan, a pure
function of the input, is what lets a build resume); the writer workers, which read the bytes
anyway, would learn of a duplicate only after its shard is written.  Groups are assigned to
splits before anything is dropped, so ``report`` and ``drop`` split the data the same way and
``across_splits`` counts exactly the leaks that ``drop`` removes.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from shards.formats import FORMATS
from shards.imaging import SampleError
from shards.items import Skip, SourceItem
from shards.options import BuildOptions

THUMBNAIL = 32
"""pHash's grey thumbnail, THUMBNAIL x THUMBNAIL, whose 8 x 8 lowest frequencies are the hash."""
_DCT = np.cos(np.pi * (2 * np.arange(THUMBNAIL)[None, :] + 1) * np.arange(8)[:, None] / (2 * THUMBNAIL))
"""The first 8 rows of the (unscaled) DCT-II matrix: only the signs against the median matter."""
MAX_NEAR = 16
"""Largest ``--near-duplicates`` distance: beyond it unrelated pictures match (two random
hashes are 32 bits apart on average)."""


def perceptual_hash(data: bytes) -> int | None:
    """The 64-bit pHash of an encoded image, None if it does not decode: the 8 x 8 lowest DCT
    frequencies of a 32 x 32 grey thumbnail, one bit each, set where the coefficient is above
    the median of the 63 that are not the mean.  Low frequencies survive re-encoding; a
    difference hash (neighbouring grey levels) flipped 5 to 20 bits on re-encoded synthetic
    faces, whose flat backgrounds leave neighbours nearly equal.  Grey is taken in floating
    point, so 16-bit images hash by their own range; JPEGs decode at a reduced scale (``draft``)."""
    try:
        image = Image.open(io.BytesIO(data))
        image.draft("L", (2 * THUMBNAIL, 2 * THUMBNAIL))
        grey = ImageOps.exif_transpose(image).convert("F")
    except Exception:  # PIL raises many types for data it cannot decode; the writer reports why
        return None
    thumbnail = np.asarray(grey.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX), np.float64)
    low = (_DCT @ thumbnail @ _DCT.T).ravel()
    return int.from_bytes(np.packbits(low > np.median(low[1:])).tobytes(), "big")


def hash_items(items: list[SourceItem], options: BuildOptions) -> list[tuple[str, str | None, int | None]]:
    """(key, sha256, pHash or None) of each item's source bytes; (key, None, None) for an item
    that cannot be read (the writer skips it with the reason).  Runs in worker processes."""
    read = FORMATS[options.format].source_bytes
    hashes = []
    for item in items:
        try:
            data = read(item, options)
        except SampleError:
            hashes.append((item.key, None, None))
            continue
        near = perceptual_hash(data) if options.near_duplicates is not None else None
        hashes.append((item.key, hashlib.sha256(data).hexdigest(), near))
    return hashes


def near_pairs(hashes: np.ndarray, distance: int) -> list[tuple[int, int]]:
    """Index pairs (i < j) of the uint64 ``hashes`` at most ``distance`` bits apart.

    Pigeonhole: cut into ``distance + 1`` bands, two hashes that close agree exactly on one band
    at least, so only hashes sharing a band value are compared.
    """
    bands = distance + 1
    width = -(-64 // bands)
    found = set()
    for band in range(bands):
        part = (hashes >> np.uint64(band * width)) & np.uint64((1 << width) - 1)
        order = np.argsort(part, kind="stable")
        for run in np.split(order, np.flatnonzero(np.diff(part[order])) + 1):
            if len(run) > 1:
                close = np.bitwise_count(hashes[run][:, None] ^ hashes[run][None, :]) <= distance
                i, j = np.nonzero(np.triu(close, 1))
                found.update(zip(np.minimum(run[i], run[j]).tolist(), np.maximum(run[i], run[j]).tolist(), strict=True))
    return sorted(found)


def find_duplicates(items: list[SourceItem], hashes: dict[str, tuple[str | None, int | None]],
                    split_of: dict[str, str], options: BuildOptions) -> tuple[dict[str, Any], dict[str, Skip]]:
    """The manifest's ``duplicates`` and, with ``--duplicates drop``, the items to leave out:
    in each cluster of copies (same bytes, or linked by near hashes) every item but the first in
    key order, which is the scan's stable order."""
    ordered = sorted(items, key=lambda i: i.key)
    parent = list(range(len(ordered)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        first, second = sorted((root(i), root(j)))
        parent[second] = first  # the root is the cluster's first item in key order

    first_with: dict[str, int] = {}
    for index, item in enumerate(ordered):
        digest = hashes[item.key][0]
        if digest is not None:
            join(first_with.setdefault(digest, index), index)
    near = [(index, hashes[item.key][1]) for index, item in enumerate(ordered) if hashes[item.key][1] is not None]
    if options.near_duplicates is not None and near:
        indices, values = zip(*near, strict=True)
        for i, j in near_pairs(np.array(values, np.uint64), options.near_duplicates):
            join(indices[i], indices[j])
    clusters: dict[int, list[int]] = {}
    for index in range(len(ordered)):
        clusters.setdefault(root(index), []).append(index)
    copies = [[ordered[i] for i in members] for members in clusters.values() if len(members) > 1]
    exact = {}
    for item in ordered:
        exact.setdefault(hashes[item.key][0] or item.key, []).append(item.path)
    report = {
        "mode": options.duplicates,
        "near_distance": options.near_duplicates,
        "exact": [paths for paths in exact.values() if len(paths) > 1],
        "near": [[i.path for i in cluster] for cluster in copies if len({hashes[i.key][0] for i in cluster}) > 1],
        "across_identities": sum(len({i.group for i in cluster}) > 1 for cluster in copies),
        "across_splits": sum(len({split_of[i.key] for i in cluster}) > 1 for cluster in copies),
        "not_hashed": sum(hashes[i.key][0] is None for i in ordered),
    }
    dropped = {}
    if options.duplicates == "drop":
        for kept, *others in copies:
            for item in others:
                how = ("same bytes" if hashes[item.key][0] == hashes[kept.key][0]
                       else f"the same picture: perceptual hashes within {options.near_duplicates} bits")
                dropped[item.key] = Skip(item.path, f"duplicate of {kept.path} ({how})")
    report["dropped"] = len(dropped)
    return report, dropped
