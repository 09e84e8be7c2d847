"""The exact command lines ``launch`` runs: torchrun (one host or many) and the deepspeed launcher.

Pure functions of the cluster description and the worker's arguments, so ``--dry-run``
prints what would run and the tests compare that text.  SLURM's script is in launcher/launch/slurm.py.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from launcher.config.loader import ConfigError
from launcher.launch.agent import AGENT_MODULE
from launcher.launch.cluster import RESTART_SAFE_ENV, STOP_SIGNALS, ClusterConfig, nodes_range, threads_per_process
from launcher.launch.hostfile import active_slots, read_hostfile
from launcher.run_dir import RunDir
from launcher.run_lock import LOCK_HELD_ENV


@dataclass(frozen=True)
class WorkerArgs:
    """What every worker process is started with: ``python -m launcher.runtime.train CONFIG ...``."""

    config: str
    overrides: tuple[str, ...] = ()
    resume: bool = False
    module: str = "launcher.runtime.train"

    def argv(self) -> list[str]:
        args = ["-m", self.module, self.config]
        for item in self.overrides:
            args += ["--set", item]
        return args + (["--resume"] if self.resume else [])


@dataclass(frozen=True)
class LaunchPlan:
    """A command, the variables set for it, files to write first, an endpoint to wait for."""

    command: list[str]
    env: dict[str, str]
    files: dict[Path, str] = field(default_factory=dict)
    wait_for: tuple[str, int] | None = None


def thread_env(cluster: ClusterConfig, nproc: int, environ: Mapping[str, str]) -> dict[str, str]:
    """Split the node's cores between its processes (torchrun alone would set 1 each);
    a value the user exported wins unless the cluster file sets one."""
    if cluster.threads_per_process is None and "OMP_NUM_THREADS" in environ:
        return {}
    return {"OMP_NUM_THREADS": str(threads_per_process(cluster, nproc))}


def locks_the_run_dir(cluster: ClusterConfig) -> bool:
    """Whether ``launch`` on this node holds the run directory's lock for the job, or else rank 0
    takes it: one node's ``launch`` does (this host alone, static node rank 0, the deepspeed
    runner's host); with a c10d rendezvous any node may come and go (and two "nodes" may share a
    host), and with SLURM no ``launch`` runs, so rank 0 does."""
    if cluster.launcher == "slurm":
        return False
    if cluster.launcher == "deepspeed" or not (cluster.multi_node or cluster.rdzv_host):
        return True
    return cluster.node_rank == 0


def worker_env(cluster: ClusterConfig, nproc: int, environ: Mapping[str, str]) -> dict[str, str]:
    """Variables for the processes ``launch`` starts: threads, and whether the run directory is
    locked by a ``launch`` already (with a static rendezvous, node 0's)."""
    held = locks_the_run_dir(cluster) or cluster.node_rank is not None
    return {**thread_env(cluster, nproc, environ), **(LOCK_HELD_ENV if held else {})}


def torchrun_plan(cluster: ClusterConfig, worker: WorkerArgs, nproc: int, rdzv_id: str, python: str,
                  environ: Mapping[str, str]) -> LaunchPlan:
    command = [python, "-m", AGENT_MODULE]
    wait_for = None
    if not cluster.multi_node and not cluster.rdzv_host:
        command.append("--standalone")
    elif cluster.node_rank is not None:  # static rendezvous: node 0 hosts the store at the master address
        host = _require_host(cluster)
        command += [f"--nnodes={cluster.nnodes}", f"--node-rank={cluster.node_rank}",
                    f"--master-addr={host}", f"--master-port={cluster.rdzv_port}",
                    f"--rdzv-conf=timeout={cluster.rdzv_timeout_s}"]
        wait_for = (host, cluster.rdzv_port) if cluster.node_rank > 0 else None
    else:
        host = _require_host(cluster)
        command += [f"--nnodes={cluster.nnodes}", "--rdzv-backend=c10d",
                    f"--rdzv-endpoint={host}:{cluster.rdzv_port}", f"--rdzv-id={rdzv_id}",
                    f"--rdzv-conf=join_timeout={cluster.rdzv_timeout_s}"]
        wait_for = (host, cluster.rdzv_port)
    command += [f"--nproc-per-node={nproc}", f"--max-restarts={cluster.max_restarts}",
                f"--signals-to-handle={STOP_SIGNALS}", *worker.argv()]
    env = {**worker_env(cluster, nproc, environ), "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(cluster.stop_grace_s),
           **RESTART_SAFE_ENV}
    return LaunchPlan(command, env, wait_for=wait_for)


def deepspeed_plan(cluster: ClusterConfig, worker: WorkerArgs, nproc: int, run_dir: RunDir, python: str,
                   environ: Mapping[str, str]) -> LaunchPlan:
    """The deepspeed launcher: this host (``nproc`` processes) or the hosts of a hostfile.

    It never restarts failed workers (relaunch with --resume), and forwards only a few
    variable prefixes to other nodes: the rest go in .deepspeed_env (REFERENCE.md §10).
    """
    command = [python, "-m", "deepspeed.launcher.runner"]
    if not cluster.hostfile:
        if cluster.multi_node or cluster.include or cluster.exclude:
            raise ConfigError("cluster: the deepspeed launcher needs a hostfile for more than one node "
                              "or for include/exclude")
        command += [f"--num_gpus={nproc}", f"--master_port={cluster.rdzv_port}"]
        return LaunchPlan([*command, "--no_local_rank", "--module", *worker.argv()[1:]],
                          worker_env(cluster, nproc, environ))

    slots = active_slots(read_hostfile(cluster.hostfile), cluster.include, cluster.exclude, cluster.hostfile)
    wanted = nodes_range(cluster.nnodes)[0]
    if cluster.multi_node and len(slots) != wanted:
        raise ConfigError(f"cluster: nnodes is {wanted} but hostfile {cluster.hostfile} "
                          f"(after include/exclude) gives {len(slots)} host(s): {', '.join(slots)}")
    variables = worker_env(cluster, max(len(s) for s in slots.values()), environ)
    command.append(f"--hostfile={cluster.hostfile}")
    if cluster.include:
        command.append(f"--include={cluster.include}")
    if cluster.exclude:
        command.append(f"--exclude={cluster.exclude}")
    command += [f"--master_addr={cluster.rdzv_host or next(iter(slots))}", f"--master_port={cluster.rdzv_port}",
                "--no_local_rank", "--module", *worker.argv()[1:]]
    env_file = run_dir.deepspeed_env
    forwarded = {key: value for key, value in sorted(environ.items())
                 if key.startswith(cluster.forward_env) and "\n" not in value}
    lines = [f"{key}={value}\n" for key, value in {**forwarded, **variables}.items()]
    # The lock variable in this process's environment too: a one-host hostfile runs here, without the file.
    return LaunchPlan(command, {"DS_ENV_FILE": str(env_file.absolute()), **LOCK_HELD_ENV},
                      files={env_file: "".join(lines)})


def _require_host(cluster: ClusterConfig) -> str:
    if not cluster.rdzv_host:
        raise ConfigError("cluster: a multi-node torchrun job needs rdzv_host (the first node; "
                          "--rdzv-endpoint HOST:PORT)")
    return cluster.rdzv_host


def default_nproc(cluster: ClusterConfig, environ: Mapping[str, str]) -> int:
    """One process per GPU on GPU hosts, one on CPU-only hosts, unless the cluster says."""
    if cluster.nproc_per_node is not None:
        return cluster.nproc_per_node
    if cluster.launcher == "slurm":  # the nodes are not this (login) host: go by the request
        return cluster.slurm.gpus_per_node or 1
    return visible_gpus(environ) or 1


def visible_gpus(environ: Mapping[str, str]) -> int:
    """GPUs a worker on this host would see, without importing torch (the launch side never
    does): CUDA_VISIBLE_DEVICES when set, else the driver's list (``nvidia-smi -L``), else none."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        devices = [d for d in environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
        return 0 if devices[:1] == ["-1"] else len(devices)
    if shutil.which("nvidia-smi", path=environ.get("PATH")) is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, env=dict(environ))
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines()) if listing.returncode == 0 else 0
