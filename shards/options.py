"""Options of ``shards build``; those that change the output are part of the build's fingerprint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuildOptions:
    format: str
    src: Path
    out: Path
    size: int | None = None
    """Resize so the shorter side is this many pixels (ignored for aligned faces)."""
    quality: int = 95
    """JPEG quality when a JPEG source has to be re-encoded."""
    align: str = "none"
    """'mtcnn': detect five landmarks and warp onto ``template`` (face formats only)."""
    template: str = "arcface112"
    unaligned: str = "keep"
    """Faces MTCNN does not find: 'keep' (centre crop at the template size) or 'skip'."""
    maxcount: int = 10_000
    maxsize: int = 1_000_000_000
    """Bytes of source data per shard (shards are planned before encoding, so that a resumed
    build produces the same shard names)."""
    workers: int = 1
    split: str | None = None
    """'train=0.9,val=0.1': ratios of groups (identities or patients); None keeps the
    dataset's official split, or puts everything in 'train'."""
    seed: int = 0
    limit: int | None = None
    attributes: Path | None = None
    """CSV of per-identity attributes joined into each sample's json (e.g. FEI gender)."""
    min_size: int = 2
    """Images with a side shorter than this many pixels are kept and flagged."""

    def fingerprint_fields(self) -> dict:
        """Everything that changes what is written (not where, not how many processes)."""
        fields = dataclasses.asdict(self)
        for name in ("out", "workers"):
            fields.pop(name)
        return {k: str(v) if isinstance(v, Path) else v for k, v in fields.items()}


def parse_split(spec: str | None) -> dict[str, float] | None:
    """'train=0.8,val=0.1,test=0.1' -> {'train': 0.8, ...}; ratios must sum to 1."""
    if spec is None:
        return None
    ratios = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        try:
            ratios[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--split {spec!r}: expected NAME=RATIO[,NAME=RATIO...]") from None
        if not sep or not name.strip() or ratios[name.strip()] < 0:
            raise ValueError(f"--split {spec!r}: expected NAME=RATIO[,NAME=RATIO...]")
    if abs(sum(ratios.values()) - 1.0) > 1e-6:
        raise ValueError(f"--split {spec!r}: ratios sum to {sum(ratios.values()):g}, not 1")
    return ratios
