"""The face demo, end to end: data -> shards -> 2-process DeepSpeed training -> verification.

    python -m facetrain.demo [--data /path/to/CASIA-WebFace] [--nproc 2] [--resume] [--short] [--work runs]

Without --data, 200 procedurally drawn identities x 12 images are written in the
CASIA-WebFace layout; with it, the given folder is used as it is (resized to 72 px so the
demo's small CPU model can train on it: a pipeline check, not a recipe).  Shards are built with
identity-disjoint train/val splits, and a verification set of 40 further identities is written in
insightface's ``.bin`` layout (as LFW, CFP-FP and AgeDB-30 are distributed) and converted with
``shards build insightface-bin``; then ``launch configs/face/demo.yaml`` trains and evaluates
verification on the held-out identities and on the .bin set (``task.benchmarks``) before, during
and after training.  ``--short`` is the same pipeline made small (60 identities, 40 steps, 200
.bin pairs) for ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

from facetrain.demo_data import write_casia_layout, write_verification_bin
from launcher.launch import cli
from shards.cli import main as shards_main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "face" / "demo.yaml"
SHORT = {"identities": 60, "steps": 40}
BIN_PAIRS_PER_FOLD = {False: 60, True: 20}
"""Pairs per fold of the demo's .bin verification set (full, short)."""
"""The short form: every stage of the demo, a few dozen steps, evaluation before, halfway and after."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facetrain.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a CASIA-WebFace folder (<id>/<nnn>.jpg) instead of generated faces")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue the last demo run")
    parser.add_argument("--short", action="store_true", help=f"{SHORT['identities']} identities, {SHORT['steps']} "
                        "steps: the whole pipeline in under a minute (what make test runs)")
    parser.add_argument("--work", type=Path, default=Path("runs"), help="where the data and the run go (default: runs)")
    args = parser.parse_args(argv)
    work = args.work / ("face_demo_short_data" if args.short else "face_demo_data")
    identities = SHORT["identities"] if args.short else 200
    source, shards = args.data, work / ("shards_real" if args.data else "shards")
    if source is None:
        source = work / "casia"
        if not source.is_dir():
            print(f"writing {identities} synthetic identities x 12 images to {source} (CASIA-WebFace layout)",
                  flush=True)
            write_casia_layout(source, identities=identities, images_per_identity=12, size=72)
    build = ["build", "casia-webface", str(source), str(shards), "--split", "train=0.8,val=0.2", "--seed", "0",
             "--maxcount", "300"] + (["--size", "72", "--workers", "2"] if args.data else [])
    held_out = work / "heldout_faces.bin"  # identities of their own, in the benchmark sets' format
    if not held_out.is_file():
        print(f"writing a verification set of {10 * BIN_PAIRS_PER_FOLD[args.short]} pairs to {held_out} "
              "(insightface .bin layout)", flush=True)
        write_verification_bin(held_out, identities=40, pairs_per_fold=BIN_PAIRS_PER_FOLD[args.short], size=72,
                               seed=1)
    for command in (build, ["build", "insightface-bin", str(held_out), str(work / "heldout_faces")]):
        print(f"shards {' '.join(command)}", flush=True)
        with contextlib.redirect_stdout(io.StringIO()) as summary:
            status = shards_main(command)  # prints its own error on stderr
        print(summary.getvalue(), flush=True)
        if status != 0:
            return status
    run_dir = args.work / ("face_demo_short" if args.short else "face_demo")
    overrides = [f"task.stream.shards={shards}", f"run_dir={run_dir}", f"task.benchmarks=[{work / 'heldout_faces'}]"]
    if args.short:
        steps = SHORT["steps"]
        overrides += [f"train.steps={steps}", f"train.eval_every={steps // 2}", f"checkpoint.every_steps={steps // 2}",
                      f"schedule.warmup_steps={steps // 4}",
                      "task.eval_pairs_per_fold=60"]  # 12 held-out identities: 792 matched pairs
    return cli.main([str(CONFIG), "--nproc", str(args.nproc), *(a for o in overrides for a in ("--set", o)),
                     "--resume" if args.resume else "--fresh"])


if __name__ == "__main__":
    sys.exit(main())
