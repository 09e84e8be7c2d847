"""The medical demo, end to end: figshare-layout .mat files -> shards with patient-level splits
-> 2-process DeepSpeed training of DenseNet201 + Soft Attention (CPU flavour) -> the clinical
evaluation on held-out patients before, during and after training, with its pictures.

    python -m medtrain.demo [--data /path/to/figshare-tumor] [--nproc 2] [--resume] [--short] [--work runs]

Without --data, synthetic brain-MRI slices of 45 patients (medtrain/demo_data.py) are written in
the published layout (MATLAB v7.3 .mat files, 16-bit images, cvind.mat); with it, the given
folder (the four unpacked zips and cvind.mat) is used as it is.  Shards are built with
patient-disjoint train/val splits stratified by tumour type, then ``launch configs/med/demo.yaml``
trains.  ``--short`` is the same pipeline made small (40 steps) for ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

from launcher.launch import cli
from medtrain.demo_data import write_figshare_layout
from shards.cli import main as shards_main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "med" / "demo.yaml"
PATIENTS = {"full": 45, "short": 24}
SHORT_STEPS = 40


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medtrain.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a figshare brain-tumour folder (N.mat files, cvind.mat)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue the last demo run")
    parser.add_argument("--short", action="store_true", help=f"{PATIENTS['short']} patients, {SHORT_STEPS} steps: "
                        "the whole pipeline in about a minute (what make test runs)")
    parser.add_argument("--work", type=Path, default=Path("runs"), help="where the data and the run go (default: runs)")
    args = parser.parse_args(argv)
    size = "short" if args.short else "full"
    work = args.work / f"med_demo_{size}_data"
    source, shards = args.data, work / ("shards_real" if args.data else "shards")
    if source is None:
        source = work / "figshare"
        if not source.is_dir():
            print(f"writing {PATIENTS[size]} synthetic patients x 6 MRI slices to {source} (figshare .mat layout)",
                  flush=True)
            write_figshare_layout(source, patients=PATIENTS[size], slices_per_patient=6, size=128)
    build = ["build", "figshare-tumor", str(source), str(shards), "--split", "train=0.6,val=0.4", "--stratify",
             "--seed", "0", "--maxcount", "200"] + (["--size", "128", "--workers", "2"] if args.data else [])
    print(f"shards {' '.join(build)}", flush=True)
    with contextlib.redirect_stdout(io.StringIO()) as summary:
        status = shards_main(build)  # prints its own error on stderr
    print(summary.getvalue(), flush=True)
    if status != 0:
        return status
    run_dir = args.work / f"med_demo{'_short' if args.short else ''}"
    overrides = [f"task.stream.shards={shards}", f"run_dir={run_dir}"]
    if args.short:
        overrides += [f"train.steps={SHORT_STEPS}", f"train.eval_every={SHORT_STEPS // 2}",
                      f"checkpoint.every_steps={SHORT_STEPS // 2}", "task.bootstrap=200"]
    return cli.main([str(CONFIG), "--nproc", str(args.nproc), *(a for o in overrides for a in ("--set", o)),
                     "--resume" if args.resume else "--fresh"])


if __name__ == "__main__":
    sys.exit(main())
