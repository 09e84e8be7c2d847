"""The formats ``shards build`` reads: one explicit table, name -> scanner and loader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shards.formats import faces, finegrained, idc, ijb, insightface_bin, lfw, mxnet_rec, tumor
from shards.render import render_image, source_file


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
    template: str | None = None
    """The alignment template the format's images are published on (insightface's sets:
    arcface112, REFERENCE.md §6), recorded in the manifest's geometry."""
    source_is_file: bool = False
    """SRC is one file (an insightface .bin), not a folder."""
    source_bytes: Callable | None = source_file
    """source_bytes(item, options) -> the encoded source, as duplicate detection hashes it;
    None: not checked (a .bin stores an image again for every pair it is in)."""


FORMATS: dict[str, Format] = {
    "casia-webface": Format(faces.scan_casia, faces=True),
    "vggface2": Format(faces.scan_vggface2, faces=True),
    "imagefolder": Format(faces.scan_imagefolder, faces=True),
    "lfw-pairs": Format(lfw.scan_lfw_pairs, faces=True),
    "insightface-bin": Format(insightface_bin.scan_insightface_bin, insightface_bin.render_bin_image, faces=True,
                              template="arcface112", source_is_file=True, source_bytes=None),
    "mxnet-rec": Format(mxnet_rec.scan_mxnet_rec, mxnet_rec.render_record, faces=True, template="arcface112",
                        source_bytes=mxnet_rec.record_image),
    **{name: Format(ijb.scan_ijb, ijb.render_loose_crop, faces=True, template=ijb.TEMPLATE) for name in ijb.NAMES},
    "figshare-tumor": Format(tumor.scan_figshare_tumor, tumor.render_tumor, label_order=tumor.LABEL_ORDER,
                             intensity=tumor.INTENSITY),
    "idc": Format(idc.scan_idc, idc.render_patch, label_order=idc.LABEL_ORDER),
    "cub200-2010": Format(finegrained.scan_cub2010),
    "cub200-2011": Format(finegrained.scan_cub2011),
    "stanford-dogs": Format(finegrained.scan_stanford_dogs),
}
