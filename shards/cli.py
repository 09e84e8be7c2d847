"""``shards``: build, verify and summarise WebDataset shards.

    shards build FORMAT SRC OUT [options]
        [--split train=0.7,val=0.15,test=0.15 [--stratify] --seed S | --split folds --test-fold K [--val-fold J]
         | --split val=@heldout.txt,train=rest | --split "val=Name_A+Name_B,train=rest"]
        [--pairs val=all | --pairs val=10x600] [--duplicates report|drop] [--near-duplicates BITS]
    shards verify OUT [--sample N] [--min-size S]
    shards stats OUT
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from shards.align import TEMPLATES
from shards.build import BuildError, build
from shards.duplicates import MAX_NEAR
from shards.formats import FORMATS
from shards.manifest import ManifestError
from shards.options import BuildOptions
from shards.verify import stats, verify


def byte_size(text: str) -> int:
    """'500MB', '1GB', '2e9' -> bytes."""
    units = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    clean = text.strip().upper().removesuffix("B")
    try:
        if clean and clean[-1] in units:
            return int(float(clean[:-1]) * units[clean[-1]])
        return int(float(clean))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500MB, 1GB)") from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def hash_distance(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_NEAR:
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_NEAR} bits, got {value}")
    return value


MIN_SIZE_HELP = "flag (keep, warn about) images with a side shorter than this many pixels"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="shards", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="build shards from a dataset's published layout")
    b.add_argument("format", choices=sorted(FORMATS))
    b.add_argument("src", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--size", type=positive_int, help="resize: shorter side in pixels")
    b.add_argument("--quality", type=positive_int, default=95, help="JPEG quality when re-encoding")
    b.add_argument("--align", choices=["none", "mtcnn"], default="none")
    b.add_argument("--template", choices=sorted(TEMPLATES), default="arcface112")
    b.add_argument("--unaligned", choices=["keep", "skip"], default="keep",
                   help="faces MTCNN misses: keep centre-cropped, or skip")
    b.add_argument("--maxcount", type=positive_int, default=10_000, help="samples per shard")
    b.add_argument("--maxsize", type=byte_size, default=10**9, help="source bytes per shard")
    b.add_argument("--workers", type=positive_int, default=1, help="worker processes")
    b.add_argument("--split", help="by group: ratios train=0.9,val=0.1; names val=@FILE,train=rest (FILE: one "
                   "identity/patient per line, # comments) or val=NAME+NAME,train=rest (names joined by '+'; "
                   "a name with '+', ',' or edge spaces needs the file); or 'folds' (the dataset's own; "
                   "--test-fold) (default: the official split)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--stratify", action="store_true",
                   help="with ratios: each split's class mix as close as whole groups allow to the dataset's")
    b.add_argument("--test-fold", type=int, metavar="K", help="with --split folds: fold K is 'test'")
    b.add_argument("--val-fold", type=int, metavar="J", help="with --split folds: fold J is 'val'")
    b.add_argument("--allow-group-leak", action="store_true",
                   help="build even if the source's folds put a patient in two splits (named in the manifest)")
    b.add_argument("--limit", type=positive_int, help="only the first N samples (quick trials)")
    b.add_argument("--attributes", type=Path, help="CSV of per-identity attributes (first column: id)")
    b.add_argument("--min-size", type=positive_int, default=2, help=MIN_SIZE_HELP)
    b.add_argument("--pairs", metavar="SPLIT=all|FxN", help="verification pairs of a split in the manifest: "
                   "'all' (every matched pair + as many mismatched) or 10x600 (LFW-style folds), --seed")
    b.add_argument("--duplicates", choices=["report", "drop"], default="report",
                   help="duplicate images (same bytes; near ones with --near-duplicates): list in the manifest, "
                   "or drop all but the first")
    b.add_argument("--near-duplicates", type=hash_distance, metavar="BITS",
                   help="also match re-encoded copies: perceptual hashes at most BITS apart of 64 (e.g. 4)")
    v = commands.add_parser("verify", help="re-hash, re-count and decode every shard")
    v.add_argument("out", type=Path)
    v.add_argument("--sample", type=positive_int, help="decode only N random samples")
    v.add_argument("--min-size", type=positive_int, default=2, help=MIN_SIZE_HELP)
    s = commands.add_parser("stats", help="summarise a shard folder")
    s.add_argument("out", type=Path)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "build":
            return run_build(args, argv if argv is not None else sys.argv[1:])
        if args.command == "verify":
            report = verify(args.out, args.sample, min_size=args.min_size)
            print("\n".join(report.lines(args.out)))
            return 1 if report.problems else 0
        print(stats(args.out))
        return 0
    except (BuildError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_build(args: argparse.Namespace, argv: list[str]) -> int:
    options = BuildOptions(
        format=args.format, src=args.src, out=args.out, size=args.size, quality=args.quality,
        align=args.align, template=args.template, unaligned=args.unaligned, maxcount=args.maxcount,
        maxsize=args.maxsize, workers=args.workers, split=args.split, seed=args.seed,
        stratify=args.stratify, test_fold=args.test_fold, val_fold=args.val_fold,
        allow_group_leak=args.allow_group_leak,
        limit=args.limit, attributes=args.attributes, min_size=args.min_size, pairs=args.pairs,
        duplicates=args.duplicates, near_duplicates=args.near_duplicates,
    )
    started = time.monotonic()
    manifest = build(options, "shards " + " ".join(map(shlex.quote, argv)))
    seconds = time.monotonic() - started
    written = sum(s["count"] for s in manifest["shards"])
    print(stats(args.out))
    print(f"built in {seconds:.1f}s ({written / seconds:.1f} images/s); "
          f"{manifest['shards_reused']} shard(s) kept from an earlier run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
