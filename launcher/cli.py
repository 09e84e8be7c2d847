"""``launch``: validate a job config, then start its processes with torchrun.

    launch configs/demo.yaml --nproc 2 [--set train.steps=50] [--resume | --fresh] [--dry-run]

Every config mistake is reported here, before any process is spawned.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from launcher.checkpoint import existing_checkpoint_error
from launcher.schema import load_job_config_or_report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="job config YAML")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes on this host (one per GPU on GPU hosts)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value (repeatable)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue from the newest complete checkpoint in run_dir")
    group.add_argument("--fresh", action="store_true",
                       help="delete run_dir's checkpoints and results first")
    parser.add_argument("--dry-run", action="store_true", help="print the command only")
    return parser.parse_args(argv)


def torchrun_command(args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={args.nproc}", "-m", "launcher.train", args.config]
    for item in args.set:
        command += ["--set", item]
    if args.resume:
        command.append("--resume")
    return command


def thread_env(nproc: int) -> dict[str, str]:
    """Split this host's cores between the processes (torchrun would set 1 each)."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    job = load_job_config_or_report(args.config, args.set)
    if job is None:
        return 2
    if args.nproc < 1:
        print("error: --nproc must be at least 1", file=sys.stderr)
        return 2
    run_dir = Path(job.run_dir)
    if args.fresh and not args.dry_run:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        (run_dir / "results.json").unlink(missing_ok=True)
    existing = existing_checkpoint_error(run_dir)
    if existing and not (args.resume or args.fresh):
        print(f"error: {existing}", file=sys.stderr)
        return 2
    command, env = torchrun_command(args), thread_env(args.nproc)
    print(" ".join([*(f"{k}={v}" for k, v in env.items()), *map(shlex.quote, command)]), flush=True)
    if args.dry_run:
        return 0
    os.execve(command[0], command, {**os.environ, **env})


if __name__ == "__main__":
    sys.exit(main())
