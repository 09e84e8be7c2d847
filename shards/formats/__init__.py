"""The formats ``shards build`` reads: one explicit table, name -> scanner and loader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shards.formats import faces, finegrained, idc, lfw, tumor
from shards.render import render_image


@dataclass(frozen=True)
class Format:
    scan: Callable
    """scan(src, options) -> ScanResult"""
    render: Callable = render_image
    """render(item, options, aligner) -> (fields, json additions)"""
    faces: bool = False
    """Face data: MTCNN alignment allowed, single-image identities flagged."""
    label_order: tuple[str, ...] | None = None
    """Official label order (ids follow it); None sorts label names."""
    intensity: str | None = None
    """The intensity mapping (``AugmentConfig.intensity``) the format implies for its 16-bit
    images, recorded in the manifest; None: the format implies none."""


FORMATS: dict[str, Format] = {
    "casia-webface": Format(faces.scan_casia, faces=True),
    "vggface2": Format(faces.scan_vggface2, faces=True),
    "imagefolder": Format(faces.scan_imagefolder, faces=True),
    "lfw-pairs": Format(lfw.scan_lfw_pairs, faces=True),
    "figshare-tumor": Format(tumor.scan_figshare_tumor, tumor.render_tumor, label_order=tumor.LABEL_ORDER,
                             intensity=tumor.INTENSITY),
    "idc": Format(idc.scan_idc, idc.render_patch, label_order=idc.LABEL_ORDER),
    "cub200-2010": Format(finegrained.scan_cub2010),
    "cub200-2011": Format(finegrained.scan_cub2011),
    "stanford-dogs": Format(finegrained.scan_stanford_dogs),
}
