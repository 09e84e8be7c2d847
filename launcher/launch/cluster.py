"""Where a job runs: the cluster description that ``launch`` turns into a command.

A cluster file is a small YAML (see configs/clusters/) loaded as strictly as a job config;
``launch`` flags override single fields. The job config itself never says where it runs,
so the same file works under every launcher.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from launcher.config.loader import ConfigError, load_config

DEFAULT_RDZV_PORT = 29400  # torchrun's own default for c10d
STOP_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
"""Signals the torchrun agent passes on to the workers (its default lacks SIGUSR1, SLURM's
preemption warning, whose default action would kill the agent and orphan the workers)."""

RESTART_SAFE_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
"""torch 2.14's agent shares one TCPStore with the workers across restarts without a per-attempt
key prefix: a restarted group reads its predecessors' gloo addresses and fails to connect.
Opting out gives every restart a fresh store (found by the SIGKILL-restart test)."""


@dataclass(frozen=True)
class SlurmConfig:
    """What the generated sbatch script asks SLURM for (``launcher: slurm``)."""

    job_name: str = ""
    """Empty: the run directory's name."""
    partition: str = ""
    account: str = ""
    time: str = "24:00:00"
    gpus_per_node: int = 0
    """0: no GPUs requested (CPU nodes)."""
    cpus_per_node: int = 0
    """--cpus-per-task of the one task per node; 0 leaves SLURM's default."""
    preemption_warning_s: int = 180
    """--signal=USR1@N: SLURM warns this long before the end; the workers checkpoint and exit."""
    requeue: bool = True
    """--requeue: a pre-empted job goes back into the queue and resumes from its checkpoint."""
    setup: tuple[str, ...] = ()
    """Shell lines run before srun on the first node (module load, activate an environment)."""
    directives: tuple[str, ...] = ()
    """Further sbatch options, e.g. "--constraint=a100"."""

    def __post_init__(self) -> None:
        if self.gpus_per_node < 0 or self.cpus_per_node < 0 or self.preemption_warning_s < 0:
            raise ConfigError("slurm: gpus_per_node, cpus_per_node and preemption_warning_s must be >= 0")


@dataclass(frozen=True)
class ClusterConfig:
    """One job's placement: which launcher, how many nodes and processes, how they meet."""

    launcher: Literal["local", "torchrun", "deepspeed", "slurm"] = "local"
    nproc_per_node: int | None = None
    """None: one per GPU on GPU hosts, 1 on CPU-only hosts."""
    nnodes: str = "1"
    """N, or MIN:MAX for an elastic torchrun job."""
    node_rank: int | None = None
    """Static rendezvous (torchrun): this node's rank; None lets the c10d rendezvous assign ranks."""
    rdzv_host: str = ""
    """The first node, which hosts the rendezvous (torchrun) or is the master (deepspeed)."""
    rdzv_port: int = DEFAULT_RDZV_PORT
    rdzv_id: str = ""
    """Empty: derived from run_dir, so it is the same on every node and on every relaunch."""
    rdzv_timeout_s: int = 120
    """How long a node waits for the rendezvous before failing with an error naming host:port."""
    max_restarts: int = 0
    """torchrun restarts of the whole worker group after a failure (each resumes from the newest checkpoint)."""
    stop_grace_s: int = 120
    """After a stop signal, how long the agent waits for the workers' checkpoint before killing them."""
    threads_per_process: int | None = None
    """OMP_NUM_THREADS; None: this node's cores divided by its processes."""
    hostfile: str = ""
    """deepspeed: a file of 'host slots=N' lines; empty: this host only."""
    include: str = ""
    """deepspeed --include, e.g. "worker-0@worker-1:0,2"."""
    exclude: str = ""
    """deepspeed --exclude, same syntax."""
    forward_env: tuple[str, ...] = ("OMP_", "MKL_", "TORCH_", "HF_", "DS_ACCELERATOR")
    """deepspeed: prefixes of variables written to .deepspeed_env (its launcher forwards only NCCL*, PYTHON*, ...)."""
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    def __post_init__(self) -> None:
        low, high = nodes_range(self.nnodes)
        if self.node_rank is not None and not (low == high and 0 <= self.node_rank < low):
            raise ConfigError(f"cluster: node_rank {self.node_rank} needs a fixed nnodes above it, got {self.nnodes!r}")
        if self.nproc_per_node is not None and self.nproc_per_node < 1:
            raise ConfigError(f"cluster: nproc_per_node must be at least 1, got {self.nproc_per_node}")
        if self.launcher == "local" and high > 1:
            raise ConfigError("cluster: launcher 'local' runs on one node; use torchrun, deepspeed or slurm")
        if self.launcher == "deepspeed" and low != high:
            raise ConfigError("cluster: the deepspeed launcher has no elastic node range")
        if not 0 < self.rdzv_port < 65536:
            raise ConfigError(f"cluster: rdzv_port {self.rdzv_port} is not a port number")
        for name in ("max_restarts", "stop_grace_s", "rdzv_timeout_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"cluster: {name} must be >= 0")

    @property
    def multi_node(self) -> bool:
        return nodes_range(self.nnodes)[1] > 1


def nodes_range(nnodes: str) -> tuple[int, int]:
    """``"4"`` -> (4, 4); ``"2:4"`` -> (2, 4)."""
    low, _, high = str(nnodes).partition(":")
    try:
        bounds = int(low), int(high or low)
    except ValueError:
        raise ConfigError(f"cluster: nnodes must be N or MIN:MAX, got {nnodes!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise ConfigError(f"cluster: nnodes must satisfy 1 <= MIN <= MAX, got {nnodes!r}")
    return bounds


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``; the port defaults to torchrun's) -> (host, port)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or "]" in port:
        host, port = endpoint, ""
    host = host.strip("[]")
    if not host:
        raise ConfigError(f"rendezvous endpoint {endpoint!r} has no host")
    try:
        return host, int(port) if port else DEFAULT_RDZV_PORT
    except ValueError:
        raise ConfigError(f"rendezvous endpoint {endpoint!r}: port {port!r} is not a number") from None


def load_cluster(path: str | None, overrides: dict[str, object]) -> ClusterConfig:
    """The cluster file (or the defaults: this host only), with ``launch`` flags applied."""
    cluster = load_config(path, ClusterConfig) if path else ClusterConfig()
    given = {key: value for key, value in overrides.items() if value is not None}
    if "rdzv_endpoint" in given:
        given["rdzv_host"], given["rdzv_port"] = parse_endpoint(str(given.pop("rdzv_endpoint")))
    return replace(cluster, **given)


def rendezvous_id(cluster: ClusterConfig, run_dir: str) -> str:
    """Stable across nodes and relaunches: the run directory names the job."""
    if cluster.rdzv_id:
        return cluster.rdzv_id
    path = os.path.abspath(run_dir)
    return f"{Path(path).name}-{hashlib.sha1(path.encode()).hexdigest()[:10]}"


def threads_per_process(cluster: ClusterConfig, nproc: int) -> int:
    if cluster.threads_per_process is not None:
        return cluster.threads_per_process
    return max(1, (os.cpu_count() or 1) // nproc)
