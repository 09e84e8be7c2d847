"""The face demo, end to end: data -> shards -> 2-process DeepSpeed training -> verification.

    python -m facetrain.demo [--data /path/to/CASIA-WebFace] [--nproc 2] [--resume]

Without --data, 200 procedurally drawn identities x 12 images are written in the
CASIA-WebFace layout; with it, the given folder is used as it is (resized to 72 px so the
demo's small CPU model can train on it: a pipeline check, not a recipe).  Shards are built with
identity-disjoint train/val splits, then ``launch configs/face/demo.yaml`` trains and evaluates
verification on the held-out identities before, during and after training.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

from facetrain.demo_data import write_casia_layout
from launcher.launch import cli
from shards.cli import main as shards_main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "face" / "demo.yaml"
WORK = Path("runs/face_demo_data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facetrain.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a CASIA-WebFace folder (<id>/<nnn>.jpg) instead of generated faces")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue the last demo run")
    args = parser.parse_args(argv)
    source, shards = args.data, WORK / ("shards_real" if args.data else "shards")
    if source is None:
        source = WORK / "casia"
        if not source.is_dir():
            print(f"writing 200 synthetic identities x 12 images to {source} (CASIA-WebFace layout)", flush=True)
            write_casia_layout(source, identities=200, images_per_identity=12, size=72)
    build = ["build", "casia-webface", str(source), str(shards), "--split", "train=0.8,val=0.2", "--seed", "0",
             "--maxcount", "300"] + (["--size", "72", "--workers", "2"] if args.data else [])
    print(f"shards {' '.join(build)}", flush=True)
    with contextlib.redirect_stdout(io.StringIO()) as summary:
        status = shards_main(build)  # prints its own error on stderr
    print(summary.getvalue(), flush=True)
    if status != 0:
        return status
    return cli.main([str(CONFIG), "--nproc", str(args.nproc), "--set", f"task.stream.shards={shards}",
                     "--resume" if args.resume else "--fresh"])


if __name__ == "__main__":
    sys.exit(main())
