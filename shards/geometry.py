"""Face geometry: one declaration, in the manifest, of the canvas the stored images share.

A face task trains on ``size`` x ``size`` windows cut from stored images without resampling
(FaceNet's random crop), so a face's scale in a training crop is its scale on the stored canvas.
Evaluation must see faces at that scale, whatever set it scores: it brings each image to the
training canvas (a resize only when the evaluation set was stored at another side, as a 112 px
insightface .bin against 72 px training shards) and takes the centre window of the same size.
The canvas and the alignment template come from the training manifest's ``geometry``, so
training and evaluation cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def tally_sides(sizes: Iterable[tuple[int, int]]) -> dict[str, Any] | None:
    """The shorter sides' range of stored (width, height) sizes and whether all were square;
    also accepts earlier tallies (shards' results).  None for no images."""
    low = high = None
    square = True
    for entry in sizes:
        if isinstance(entry, dict):
            side_low, side_high, entry_square = entry["min_side"], entry["max_side"], entry["square"]
        else:
            side_low = side_high = min(entry)
            entry_square = entry[0] == entry[1]
        low = side_low if low is None else min(low, side_low)
        high = side_high if high is None else max(high, side_high)
        square = square and entry_square
    return None if low is None else {"min_side": low, "max_side": high, "square": square}


def manifest_geometry(shard_sides: list[dict[str, Any] | None], template: str | None,
                      resize: int | None) -> dict[str, Any]:
    """The manifest's ``geometry``: ``canvas`` is the side every stored image has (square, all
    equal), None when they differ (or when shards built before sizes were recorded are reused);
    ``template`` the alignment template the faces are on, None for unaligned faces."""
    sides = None if any(s is None for s in shard_sides) else tally_sides(s for s in shard_sides)
    uniform = sides is not None and sides["square"] and sides["min_side"] == sides["max_side"]
    return {"canvas": sides["min_side"] if uniform else None, "sides": sides, "template": template,
            "resize": resize}


def geometry_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest's face geometry: ``canvas`` (None: not uniform), ``template`` (None: not aligned),
    ...; {} for a build from before it was recorded."""
    return manifest.get("geometry") or {}


def describe_geometry(geometry: dict[str, Any]) -> str:
    """One line of ``shards stats``."""
    sides = geometry.get("sides")
    if geometry.get("canvas"):
        stored = f"canvas {geometry['canvas']} px (every image {geometry['canvas']}x{geometry['canvas']})"
    elif sides:
        stored = (f"no common canvas (shorter sides {sides['min_side']}..{sides['max_side']} px"
                  + ("" if sides["square"] else ", not all square") + ")")
    else:
        stored = "sizes not recorded (shards kept from an older build)"
    return f"geometry: {stored}; alignment template {geometry.get('template') or 'none'}"
