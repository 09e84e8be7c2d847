"""``launch``: validate a job config, then start it where the cluster description says.

    launch CONFIG [--cluster CLUSTER.yaml] [--nproc N] [--set key.path=value]
           [--resume | --fresh] [--dry-run] [--submit]

Local (torchrun on this host), multi-node torchrun (static --node-rank, or c10d rendezvous
with an elastic MIN:MAX node range), the deepspeed launcher with a hostfile, or a SLURM
sbatch script. The flags below override single fields of the cluster file. Every config or
cluster mistake is reported here, before any process is spawned.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from launcher.config.schema import load_job_config_or_report
from launcher.errors import JobError
from launcher.launch.cluster import ClusterConfig, load_cluster, rendezvous_id
from launcher.launch.commands import (
    LaunchPlan,
    WorkerArgs,
    deepspeed_plan,
    default_nproc,
    locks_the_run_dir,
    torchrun_plan,
)
from launcher.launch.preflight import check_data, check_run_dir
from launcher.launch.rendezvous import is_this_host, wait_for_endpoint
from launcher.launch.slurm import sbatch_script
from launcher.launch.supervise import run_supervised
from launcher.run_dir import RunDir
from launcher.run_lock import RunDirLock

LAUNCHERS = ("local", "torchrun", "deepspeed", "slurm")
CLUSTER_FLAGS = {  # flag -> (cluster key it overrides, type, help)
    "--launcher": ("launcher", str, " | ".join(LAUNCHERS)),
    "--nproc": ("nproc_per_node", int, "processes per node (default: one per GPU, 1 on CPU hosts)"),
    "--nnodes": ("nnodes", str, "N, or MIN:MAX for an elastic torchrun job"),
    "--node-rank": ("node_rank", int, "this node's rank (static torchrun rendezvous)"),
    "--rdzv-endpoint": ("rdzv_endpoint", str, "HOST:PORT of the first node"),
    "--rdzv-id": ("rdzv_id", str, "rendezvous id (default: derived from run_dir)"),
    "--rdzv-timeout": ("rdzv_timeout_s", int, "seconds to wait for the rendezvous host"),
    "--max-restarts": ("max_restarts", int, "torchrun restarts of the worker group after a failure"),
    "--hostfile": ("hostfile", str, "deepspeed hostfile ('HOST slots=N' lines)"),
    "--include": ("include", str, "deepspeed --include"),
    "--exclude": ("exclude", str, "deepspeed --exclude"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="job config YAML")
    parser.add_argument("--cluster", help="cluster description YAML (default: this host only)")
    for flag, (_, kind, text) in CLUSTER_FLAGS.items():
        parser.add_argument(flag, type=kind, help=text, choices=LAUNCHERS if flag == "--launcher" else None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a job config value (repeatable)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue from the newest complete checkpoint in run_dir")
    group.add_argument("--fresh", action="store_true",
                       help="delete run_dir's checkpoints, results and plots first")
    parser.add_argument("--dry-run", action="store_true", help="print the command (and files) only")
    parser.add_argument("--submit", action="store_true", help="slurm: submit the script with sbatch")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def build_plan(cluster: ClusterConfig, worker: WorkerArgs, run_dir: RunDir, nproc: int, python: str) -> LaunchPlan:
    if cluster.launcher in ("local", "torchrun"):
        return torchrun_plan(cluster, worker, nproc, rendezvous_id(cluster, str(run_dir.root)), python, os.environ)
    if cluster.launcher == "deepspeed":
        return deepspeed_plan(cluster, worker, nproc, run_dir, python, os.environ)
    script = run_dir.sbatch_script
    text = sbatch_script(cluster, worker, nproc, run_dir, rendezvous_id(cluster, str(run_dir.root)), python,
                         Path.cwd())
    return LaunchPlan(["sbatch", str(script)], {}, files={script: text})


def continue_command(argv: list[str]) -> str:
    """This ``launch`` call without --resume / --fresh (the summary adds what fits)."""
    return shlex.join(["launch", *(a for a in argv if a not in ("--resume", "--fresh"))])


def show(plan: LaunchPlan) -> None:
    for path, text in plan.files.items():
        print(f"# {path}\n{text}", end="" if text.endswith("\n") else "\n")
    print(" ".join([*(f"{k}={shlex.quote(v)}" for k, v in plan.env.items()), *map(shlex.quote, plan.command)]),
          flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    job = load_job_config_or_report(args.config, args.set)
    if job is None:
        return 2
    try:
        cluster = load_cluster(args.cluster, {field: getattr(args, flag[2:].replace("-", "_"))
                                              for flag, (field, _, _) in CLUSTER_FLAGS.items()})
        if args.submit and cluster.launcher != "slurm":
            raise JobError("--submit is for launcher 'slurm' (it hands the script to sbatch)")
        run_dir, nproc = RunDir(job.run_dir), default_nproc(cluster, os.environ)
        plan = build_plan(cluster, WorkerArgs(args.config, tuple(args.set), args.resume), run_dir, nproc,
                          sys.executable)
        if not args.dry_run:  # a dry run shows the plan wherever the data is (a login node may not see it)
            check_data(job)
        holds_lock = not args.dry_run and locks_the_run_dir(cluster)
        with RunDirLock(run_dir, "launch") if holds_lock else contextlib.nullcontext():
            check_run_dir(job, cluster, run_dir, args.resume, args.fresh, nproc)
            show(plan)
            if args.dry_run:
                return 0
            return run(plan, cluster, run_dir, args)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(plan: LaunchPlan, cluster: ClusterConfig, run_dir: RunDir, args: argparse.Namespace) -> int:
    if args.fresh:
        run_dir.clear()
    for path, text in plan.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if cluster.launcher == "slurm":
        if not args.submit:
            print(f"wrote {plan.command[1]}; submit it with: sbatch {plan.command[1]} (or launch ... --submit)")
            return 0
        if shutil.which("sbatch") is None:
            raise JobError(f"sbatch is not on PATH: submit {plan.command[1]} from a SLURM login node")
        return subprocess.run(plan.command).returncode
    if plan.wait_for and not is_this_host(plan.wait_for[0]):
        wait_for_endpoint(*plan.wait_for, timeout_s=cluster.rdzv_timeout_s)
    return run_supervised(plan.command, {**os.environ, **plan.env}, run_dir, continue_command(args.argv))


if __name__ == "__main__":
    sys.exit(main())
