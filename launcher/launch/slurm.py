"""The sbatch script for a SLURM job: one torchrun agent per node through srun.

The first node of the allocation hosts the c10d rendezvous. ``--signal=USR1@N`` makes SLURM
send its preemption warning to every srun task (the torchrun agents, which pass it on to
the workers: ``--signals-to-handle``); the workers checkpoint at the next step and exit 0.
With ``--requeue`` the job comes back under the same job id and the script's ``--resume``
continues from that checkpoint, so the script is the same for the first run and every requeue.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from launcher.launch.agent import AGENT_MODULE
from launcher.launch.cluster import RESTART_SAFE_ENV, STOP_SIGNALS, ClusterConfig, nodes_range
from launcher.launch.commands import WorkerArgs
from launcher.run_dir import RunDir


def sbatch_script(cluster: ClusterConfig, worker: WorkerArgs, nproc: int, run_dir: RunDir, rdzv_id: str,
                  python: str, workdir: Path) -> str:
    s = cluster.slurm
    low, high = nodes_range(cluster.nnodes)
    directives = [
        f"--job-name={s.job_name or run_dir.name}",
        f"--nodes={low}" if low == high else f"--nodes={low}-{high}",
        "--ntasks-per-node=1",
        *([f"--gpus-per-node={s.gpus_per_node}"] if s.gpus_per_node else []),
        *([f"--cpus-per-task={s.cpus_per_node}"] if s.cpus_per_node else []),
        f"--time={s.time}",
        *([f"--partition={s.partition}"] if s.partition else []),
        *([f"--account={s.account}"] if s.account else []),
        f"--output={run_dir.sbatch_script.parent.absolute() / '%j.out'}",
        "--open-mode=append",
        *([f"--signal=USR1@{s.preemption_warning_s}"] if s.preemption_warning_s else []),
        *(["--requeue"] if s.requeue else []),
        *s.directives,
    ]
    resumed = WorkerArgs(worker.config, worker.overrides, resume=True, module=worker.module)
    torchrun = [shlex.quote(python), "-m", AGENT_MODULE, f"--nnodes={cluster.nnodes}",
                f"--nproc-per-node={nproc}", "--rdzv-backend=c10d",
                f'--rdzv-endpoint="$head_node:{cluster.rdzv_port}"', f"--rdzv-id={rdzv_id}",
                f"--rdzv-conf=join_timeout={cluster.rdzv_timeout_s}", f"--max-restarts={cluster.max_restarts}",
                f"--signals-to-handle={STOP_SIGNALS}", *map(shlex.quote, resumed.argv())]
    if cluster.threads_per_process is not None:
        threads = [f"export OMP_NUM_THREADS={cluster.threads_per_process}"]
    else:
        threads = [f"threads=$(( ${{SLURM_CPUS_PER_TASK:-$(nproc)}} / {nproc} ))",
                   "export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))"]
    lines = [
        "#!/bin/bash",
        f"# Written by launch for {worker.config}; submit with: sbatch {run_dir.sbatch_script.absolute()}",
        *(f"#SBATCH {d}" for d in directives),
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir))}",
        *s.setup,
        *threads,
        f"export TORCH_ELASTIC_SHUTDOWN_TIMEOUT={cluster.stop_grace_s}",
        *(f"export {key}={value}" for key, value in RESTART_SAFE_ENV.items()),
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "srun --ntasks-per-node=1 --kill-on-bad-exit=1 \\",
        "  " + " \\\n  ".join(_pairs(torchrun)),
    ]
    return "\n".join(lines) + "\n"


def _pairs(words: list[str]) -> list[str]:
    """Group the long command into readable lines: the program, then one option per line."""
    program_end = words.index(AGENT_MODULE) + 1
    out, rest = [" ".join(words[:program_end])], words[program_end:]
    worker_start = rest.index("-m")
    out += rest[:worker_start]
    out.append(" ".join(rest[worker_start:]))
    return out
