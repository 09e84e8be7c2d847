"""`launch --dry-run` for every launcher, checked against the exact expected text, and the
early errors for the usual cluster mistakes (nothing is started, nothing is written)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml

from launcher.launch import cli, rendezvous
from launcher.runtime.dist import free_port
from tests.dist.jobs import write_job

PY = sys.executable
STOP = "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
ELASTIC = "TORCH_ELASTIC_SHUTDOWN_TIMEOUT=120 TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"


@pytest.fixture
def job(tmp_path, monkeypatch, face_shards) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)  # the thread split below assumes 8 cores
    return write_job(tmp_path, "job", face_shards)  # real shards: a start that is not a dry run checks them


def dry_run(capsys, *args) -> str:
    code = cli.main([*map(str, args), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def fails(capsys, *args, printed_command: bool = False) -> str:
    code = cli.main(list(map(str, args)))
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert ("launcher.launch.agent" in out) == printed_command
    return err


def write_cluster(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump(fields))
    return path


def test_multi_node_torchrun_with_c10d_rendezvous_and_elastic_range(job, capsys):
    out = dry_run(capsys, job, "--launcher", "torchrun", "--nnodes", "2:4", "--nproc", 2,
                  "--rdzv-endpoint", "node0.cluster:29400", "--max-restarts", 3, "--set", "train.steps=9")
    # no FACETRAIN_RUN_LOCK: with a c10d rendezvous, rank 0 takes the run directory's lock
    rdzv_id = "job-" + hashlib.sha1(str(job.parent / "job").encode()).hexdigest()[:10]
    assert out == (
        f"OMP_NUM_THREADS=4 {ELASTIC} {PY} -m launcher.launch.agent --nnodes=2:4 --rdzv-backend=c10d "
        f"--rdzv-endpoint=node0.cluster:29400 --rdzv-id={rdzv_id} --rdzv-conf=join_timeout=120 "
        f"--nproc-per-node=2 --max-restarts=3 {STOP} -m launcher.runtime.train {job} --set train.steps=9\n")


def test_multi_node_torchrun_with_static_node_rank(job, capsys):
    out = dry_run(capsys, job, "--launcher", "torchrun", "--nnodes", 2, "--node-rank", 1, "--nproc", 8,
                  "--rdzv-endpoint", "10.0.0.1:29500", "--resume")
    assert out == (
        f"OMP_NUM_THREADS=1 FACETRAIN_RUN_LOCK=launch {ELASTIC} "  # node 0's launch holds the lock
        f"{PY} -m launcher.launch.agent --nnodes=2 --node-rank=1 --master-addr=10.0.0.1 --master-port=29500 "
        f"--rdzv-conf=timeout=120 --nproc-per-node=8 --max-restarts=0 {STOP} "
        f"-m launcher.runtime.train {job} --resume\n")


def test_deepspeed_launcher_with_hostfile_writes_deepspeed_env(job, capsys, monkeypatch, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes\nworker-0 slots=4\nworker-1 slots=4\nworker-2 slots=4\n")
    monkeypatch.setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # forwarded: deepspeed would drop TORCH_*
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    cluster = write_cluster(tmp_path / "cluster.yaml", launcher="deepspeed", nnodes="2", hostfile=str(hostfile),
                            exclude="worker-2", rdzv_port=29500)
    out = dry_run(capsys, job, "--cluster", cluster)
    env_file = tmp_path / "job" / "launch" / ".deepspeed_env"
    assert out == (
        f"# {env_file}\n"
        "TORCH_NCCL_ASYNC_ERROR_HANDLING=1\n"
        "OMP_NUM_THREADS=2\n"
        "FACETRAIN_RUN_LOCK=launch\n"
        f"DS_ENV_FILE={env_file} FACETRAIN_RUN_LOCK=launch {PY} -m deepspeed.launcher.runner --hostfile={hostfile} "
        "--exclude=worker-2 "
        f"--master_addr=worker-0 --master_port=29500 --no_local_rank --module launcher.runtime.train {job}\n")
    assert not env_file.exists()  # a dry run writes nothing


def test_slurm_script(job, capsys, tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", launcher="slurm", nnodes="4", max_restarts=2, rdzv_id="faces",
                            slurm={"gpus_per_node": 8, "cpus_per_node": 64, "partition": "gpu", "time": "48:00:00",
                                   "setup": ["source .venv/bin/activate"], "directives": ["--exclusive"]})
    out = dry_run(capsys, job, "--cluster", cluster)
    run_dir = tmp_path / "job"
    assert out == f"""# {run_dir}/slurm/job.sbatch
#!/bin/bash
# Written by launch for {job}; submit with: sbatch {run_dir}/slurm/job.sbatch
#SBATCH --job-name=job
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=48:00:00
#SBATCH --partition=gpu
#SBATCH --output={run_dir}/slurm/%j.out
#SBATCH --open-mode=append
#SBATCH --signal=USR1@180
#SBATCH --requeue
#SBATCH --exclusive
set -euo pipefail
cd {tmp_path}
source .venv/bin/activate
threads=$(( ${{SLURM_CPUS_PER_TASK:-$(nproc)}} / 8 ))
export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=120
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun --ntasks-per-node=1 --kill-on-bad-exit=1 \\
  {PY} -m launcher.launch.agent \\
  --nnodes=4 \\
  --nproc-per-node=8 \\
  --rdzv-backend=c10d \\
  --rdzv-endpoint="$head_node:29400" \\
  --rdzv-id=faces \\
  --rdzv-conf=join_timeout=120 \\
  --max-restarts=2 \\
  {STOP} \\
  -m launcher.runtime.train {job} --resume
sbatch {run_dir}/slurm/job.sbatch
"""
    assert not (run_dir / "slurm").exists()


def test_slurm_without_submit_writes_the_script_only(job, capsys, tmp_path):
    assert cli.main([str(job), "--launcher", "slurm", "--nnodes", "2"]) == 0
    script = tmp_path / "job" / "slurm" / "job.sbatch"
    assert script.read_text().startswith("#!/bin/bash\n") and "--nnodes=2" in script.read_text()
    assert f"submit it with: sbatch {script}" in capsys.readouterr().out


def test_hostfile_mistakes_are_named(job, capsys, tmp_path):
    missing = tmp_path / "nope"
    assert f"hostfile {missing}: cannot read it (No such file or directory)" in fails(
        capsys, job, "--launcher", "deepspeed", "--hostfile", missing)
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("worker-0 slots=4\nworker-1 slot=4\n")
    assert f"hostfile {hostfile}:2: expected 'HOST slots=N', got 'worker-1 slot=4'" in fails(
        capsys, job, "--launcher", "deepspeed", "--hostfile", hostfile)
    hostfile.write_text("worker-0 slots=4\nworker-1 slots=4\n")
    assert f"include: host 'worker-9' is not in hostfile {hostfile} (it lists worker-0, worker-1)" in fails(
        capsys, job, "--launcher", "deepspeed", "--hostfile", hostfile, "--include", "worker-0@worker-9")
    assert "include: host 'worker-1' has slots 0..3" in fails(
        capsys, job, "--launcher", "deepspeed", "--hostfile", hostfile, "--include", "worker-1:2,7")
    assert "nnodes is 3 but hostfile" in fails(
        capsys, job, "--launcher", "deepspeed", "--hostfile", hostfile, "--nnodes", 3)


def test_cluster_file_is_strict(job, capsys, tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", launcher="torchrun", max_restart=2)
    assert f"{cluster}: max_restart: unknown key (did you mean 'max_restarts'?)" in fails(
        capsys, job, "--cluster", cluster)
    assert "node_rank 1 needs a fixed nnodes" in fails(
        capsys, job, "--launcher", "torchrun", "--nnodes", "1:2", "--node-rank", 1, "--rdzv-endpoint", "h:1")
    assert "needs rdzv_host" in fails(capsys, job, "--launcher", "torchrun", "--nnodes", 2)
    assert "--submit is for launcher 'slurm'" in fails(capsys, job, "--submit")


def test_waiting_for_a_closed_port_fails_within_the_timeout_naming_host_and_port():
    port = free_port()  # nobody listens on it
    started = time.monotonic()
    with pytest.raises(rendezvous.RendezvousUnreachable) as error:
        rendezvous.wait_for_endpoint("127.0.0.1", port, timeout_s=2, poll_s=0.2)
    assert time.monotonic() - started < 6
    assert f"rendezvous endpoint 127.0.0.1:{port} unreachable after 2 s (Connection refused)" in str(error.value)


def test_waiting_for_a_listening_port_returns():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        rendezvous.wait_for_endpoint("127.0.0.1", server.getsockname()[1], timeout_s=2)


def test_only_addresses_of_this_machine_host_the_rendezvous():
    assert rendezvous.is_this_host("127.0.0.1") and rendezvous.is_this_host(socket.gethostname())
    assert not rendezvous.is_this_host("192.0.2.1") and not rendezvous.is_this_host("no-such-host.invalid")


def test_unreachable_rendezvous_through_the_cli(job, capsys):
    started = time.monotonic()  # 192.0.2.1: TEST-NET-1, never routed
    err = fails(capsys, job, "--launcher", "torchrun", "--nnodes", 2, "--rdzv-endpoint", "192.0.2.1:29400",
                "--rdzv-timeout", 2, printed_command=True)
    assert time.monotonic() - started < 15
    assert "rendezvous endpoint 192.0.2.1:29400 unreachable after 2 s" in err


CLUSTERS = Path(__file__).parents[2] / "configs" / "clusters"


@pytest.mark.parametrize("name", sorted(p.name for p in CLUSTERS.glob("*.yaml")))
def test_shipped_cluster_files_give_a_command(name, repo, capsys, monkeypatch):
    monkeypatch.chdir(repo)
    out = dry_run(capsys, "configs/face/casia_paper.yaml", "--cluster", f"configs/clusters/{name}")
    assert re.search(r"(-m|--module) launcher\.runtime\.train configs/face/casia_paper\.yaml", out)


def test_submit_hands_the_written_script_to_sbatch(job, capsys, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch_calls"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "Submitted batch job 42"\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert cli.main([str(job), "--launcher", "slurm", "--nnodes", "2", "--submit"]) == 0
    script = tmp_path / "job" / "slurm" / "job.sbatch"
    assert calls.read_text().split() == [str(script)]
    assert script.read_text().startswith("#!/bin/bash\n")


def test_submit_without_sbatch_says_where_to_submit(job, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cli.main([str(job), "--launcher", "slurm", "--submit"]) == 2
    assert "sbatch is not on PATH: submit" in capsys.readouterr().err


def test_the_deepspeed_env_file_says_launch_holds_the_lock_when_nothing_else_is_forwarded(job, capsys, monkeypatch,
                                                                                           tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("worker-0 slots=2\n")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own value, and no prefixes to forward
    cluster = write_cluster(tmp_path / "cluster.yaml", launcher="deepspeed", hostfile=str(hostfile), forward_env=[])
    out = dry_run(capsys, job, "--cluster", cluster)
    env_file = tmp_path / "job" / "launch" / ".deepspeed_env"
    assert out.startswith(f"# {env_file}\nFACETRAIN_RUN_LOCK=launch\nDS_ENV_FILE=")


def test_processes_per_node_follow_the_gpus_a_worker_would_see(tmp_path):
    from launcher.launch.commands import visible_gpus

    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,3"}) == 2
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == 0 and visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == 0
    assert visible_gpus({"PATH": str(tmp_path)}) == 0  # no driver
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-1)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-2)'\n")
    smi.chmod(0o755)
    assert visible_gpus({"PATH": str(tmp_path)}) == 2
