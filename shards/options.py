"""Options of ``shards build``; those that change the output are part of the build's fingerprint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from shards.named_splits import NamedSplit, is_named, parse_named

ADDED_LATER = {"stratify": False, "test_fold": None, "val_fold": None, "allow_group_leak": False, "min_size": 2,
               "pairs": None, "duplicates": "report", "near_duplicates": None}
"""Options added after shard folders were first built, left out of the fingerprint at these defaults."""


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
    """'train=0.9,val=0.1': ratios of groups (identities or patients); 'val=@heldout.txt,train=rest'
    or 'val=Name_A+Name_B,train=rest': groups by name (shards/named_splits.py); 'folds': the
    dataset's own folds (``test_fold``, ``val_fold``); None keeps the dataset's official split,
    or puts everything in 'train'."""
    seed: int = 0
    stratify: bool = False
    """With ratios: deal groups so each split's class mix matches the dataset's (plan.py)."""
    test_fold: int | None = None
    """With ``split='folds'``: this fold is 'test', the others 'train'."""
    val_fold: int | None = None
    """With ``split='folds'``: this fold is 'val' (optional)."""
    allow_group_leak: bool = False
    """Build even if the source's folds put one group (patient) in two splits; the manifest names them."""
    limit: int | None = None
    attributes: Path | None = None
    """CSV of per-identity attributes joined into each sample's json (e.g. FEI gender)."""
    min_size: int = 2
    """Images with a side shorter than this many pixels are kept and flagged."""
    pairs: str | None = None
    """'val=all' or 'val=10x600': verification pairs of that split in the manifest (shards/pairs.py)."""
    duplicates: str = "report"
    """Duplicate images (shards/duplicates.py): 'report' them in the manifest, or 'drop' all but the first."""
    near_duplicates: int | None = None
    """Also find near-duplicates: perceptual hashes at most this many bits apart."""

    def fingerprint_fields(self) -> dict:
        """Everything that changes what is written (not where, not how many processes)."""
        fields = dataclasses.asdict(self)
        for name in ("out", "workers"):
            fields.pop(name)
        for name, default in ADDED_LATER.items():  # so folders built before them keep their fingerprint
            if fields[name] == default:
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
            raise ValueError(f"--split {spec!r}: expected NAME=RATIO[,NAME=RATIO...] or folds") from None
        if not sep or not name.strip() or ratios[name.strip()] < 0:
            raise ValueError(f"--split {spec!r}: expected NAME=RATIO[,NAME=RATIO...] or folds")
    if abs(sum(ratios.values()) - 1.0) > 1e-6:
        raise ValueError(f"--split {spec!r}: ratios sum to {sum(ratios.values()):g}, not 1")
    return ratios


@dataclass(frozen=True)
class SplitMethod:
    """How ``shards build`` assigns groups to splits, checked before anything is scanned."""

    name: str
    """'official', 'ratios', 'stratified', 'named' or 'folds'."""
    ratios: dict[str, float] | None = None
    named: NamedSplit | None = None
    test_fold: int | None = None
    val_fold: int | None = None


def split_method(options: BuildOptions) -> SplitMethod:
    """The split the options ask for; ValueError (one line) for a combination that makes no sense."""
    folds = options.split is not None and options.split.strip() == "folds"
    if not folds:
        for flag, value in (("--test-fold", options.test_fold), ("--val-fold", options.val_fold)):
            if value is not None:
                raise ValueError(f"{flag} is for --split folds")
    if options.split is None:
        if options.stratify:
            raise ValueError("--stratify needs ratios: --split train=0.7,val=0.15,test=0.15")
        return SplitMethod("official")
    if is_named(options.split):
        if options.stratify:
            raise ValueError("--stratify is for ratios; a named split puts each named group where it is named")
        return SplitMethod("named", named=parse_named(options.split))
    if folds:
        if options.stratify:
            raise ValueError("--stratify is for ratios; --split folds keeps the dataset's folds as they are")
        if options.test_fold is None:
            raise ValueError("--split folds needs --test-fold K (and optionally --val-fold J)")
        if options.val_fold == options.test_fold:
            raise ValueError(f"--val-fold {options.val_fold} is also --test-fold: choose another fold")
        return SplitMethod("folds", test_fold=options.test_fold, val_fold=options.val_fold)
    return SplitMethod("stratified" if options.stratify else "ratios", ratios=parse_split(options.split))


@dataclass(frozen=True)
class PairSpec:
    """``--pairs SPLIT=all`` or ``SPLIT=FOLDSxPER_FOLD``: verification pairs of one split."""

    split: str
    folds: int | None = None
    """None: every matched pair and as many mismatched (``pairs.all_pairs``)."""
    per_fold: int | None = None

    def __str__(self) -> str:
        return f"{self.split}=" + ("all" if self.folds is None else f"{self.folds}x{self.per_fold}")


def parse_pairs(spec: str | None) -> PairSpec | None:
    """'val=all' -> PairSpec('val'); 'val=10x600' -> PairSpec('val', 10, 600)."""
    if spec is None:
        return None
    split, _, value = (text.strip() for text in spec.partition("="))
    folds, times, per_fold = value.partition("x")
    if split and value == "all":
        return PairSpec(split)
    if split and times and folds.isdigit() and per_fold.isdigit():
        if int(folds) < 2 or int(per_fold) < 2 or int(per_fold) % 2:
            raise ValueError(f"--pairs {spec!r}: at least 2 folds of an even number of pairs (half matched)")
        return PairSpec(split, int(folds), int(per_fold))
    raise ValueError(f"--pairs {spec!r}: expected SPLIT=all or SPLIT=FOLDSxPAIRS (val=10x600)")
