"""Engine overhead: one training step of the face model through plain PyTorch and through the
framework's DeepSpeed engine (launcher.runtime.engine.build_engine), in alternating rounds.

    python -m facetrain.bench_engine              # every configuration, about 5 minutes on 2 cores
    python -m facetrain.bench_engine --quick      # smoke run, under a minute
    OMP_NUM_THREADS=1 python -m facetrain.bench_engine --profile   # where the engine's time goes

The model is the face demo's: AttentionFaceNet with the small backbone at 64 px, semi-hard
triplet loss mined over the global batch, P×K = 8×4 random images per rank, AdamW (lr 2e-3,
weight decay 0.01, the framework's parameter groups), warm-up + cosine LambdaLR, gradient
clipping at 1.0.  Both paths do the training loop's per-micro-batch work: forward, loss, the
loop's flag all-reduce (``agree``), backward, clip, optimizer and schedule step.

Plain paths: fp32 is the model as is (DistributedDataParallel over gloo at world size 2);
bf16 is the model cast to bf16 with fp32 master weights for clipping and AdamW, the arithmetic
DeepSpeed's bf16 runs, so the ratio is the engine's own cost.  ``torch.autocast`` (fp32 weights,
bf16 matmuls and convolutions) is timed alongside as a reference: it is plain PyTorch's own
bf16 recipe, but different arithmetic.

Each setting (world size, threads) runs in fresh processes with OMP_NUM_THREADS set, so both
paths share one thread count; world size 2 runs under torchrun.  Per configuration (ZeRO
stage, precision): warm-up steps of every path, then rounds of N steps, the paths in turn and
the order reversed every other round, so machine-speed drift hits them alike.  Reported: the
median over rounds of the mean step time, engine / plain of those medians, the range of the
per-round ratios, the same ratio in process CPU time, the median forward / backward / step
split, the largest loss difference between the paths on the same batches, torch's thread
counts before and after each DeepSpeed call, and the CPU time other processes took meanwhile.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import json
import logging
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from facetrain.model import AttentionFaceNet
from facetrain.model_config import FaceModelConfig
from facetrain.triplet import distributed_triplet_loss
from launcher.config.schema import DeepSpeedConfig, OptimizerConfig, ScheduleConfig
from launcher.runtime.dist import DistInfo, init_distributed
from launcher.runtime.engine import build_engine
from launcher.runtime.loop import agree
from launcher.runtime.optim import build_optimizer, build_scheduler

MODEL = FaceModelConfig(backbone="small", image_size=64, freeze="none")
OPTIMIZER = OptimizerConfig(name="adamw", lr=2e-3, weight_decay=0.01)
SCHEDULE = ScheduleConfig(warmup_steps=20, decay="cosine")
CLIP = 1.0
IDENTITIES, PER_IDENTITY = 8, 4  # P×K per rank, the demo's batch
CONFIGS = [(0, "fp32"), (1, "fp32"), (0, "bf16"), (1, "bf16")]  # (ZeRO stage, precision)
SETTINGS = [(1, 1), (1, 2), (2, 1)]  # (world size, threads per process) on a 2-core machine
COMPARED = 10  # steps whose losses are compared between the paths
PROFILE_SKIP = {"forward", "backward", "wrapped_fn"}  # wrappers whose time is the model's and autograd's

# (loss, seconds of forward + loss + agree, of backward, of clip + optimizer + schedule step)
Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, tuple[float, float, float]]]


def random_batches(count: int, rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """P×K batches of random 64 px images; P random identities out of 10,000, K images each."""
    generator = torch.Generator().manual_seed(1000 + rank)
    return [(torch.randn(IDENTITIES * PER_IDENTITY, 3, MODEL.image_size, MODEL.image_size, generator=generator),
             torch.randperm(10_000, generator=generator)[:IDENTITIES].repeat_interleave(PER_IDENTITY))
            for _ in range(count)]


def loss_of(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, dist: DistInfo) -> torch.Tensor:
    """The face task's triplet step and the loop's flag all-reduce (a host sync on every path)."""
    embeddings, _ = model(images)
    loss, _ = distributed_triplet_loss(embeddings.float(), labels, dist)
    agree(loss, False, dist)
    return loss


def engine_step(engine, dist: DistInfo) -> Step:
    dtype = next(engine.module.parameters()).dtype  # the loop's move_batch casts to the compute dtype

    def step(images, labels):
        started = time.perf_counter()
        loss = loss_of(engine, images.to(dtype), labels, dist)
        forward = time.perf_counter()
        engine.backward(loss)
        backward = time.perf_counter()
        engine.step()
        return loss.detach(), (forward - started, backward - forward, time.perf_counter() - backward)

    return step


def plain_step(model: nn.Module, dist: DistInfo, total_steps: int, autocast: bool = False) -> Step:
    """fp32 weights and AdamW; with ``autocast``, bf16 matmuls and convolutions (torch.autocast)."""
    wrapped = DistributedDataParallel(model) if dist.world_size > 1 else model
    optimizer = build_optimizer(model, OPTIMIZER)  # torch.optim.AdamW over parameter_groups
    scheduler = build_scheduler(optimizer, SCHEDULE, total_steps)  # LambdaLR

    def step(images, labels):
        started = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            loss = loss_of(wrapped, images, labels, dist)
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        return loss.detach(), (forward - started, backward - forward, time.perf_counter() - backward)

    return step


def plain_bf16_step(model: nn.Module, dist: DistInfo, total_steps: int) -> Step:
    """The model in bf16, fp32 master weights for clipping and AdamW (what DeepSpeed's bf16 does)."""
    master = copy.deepcopy(model)
    model.to(torch.bfloat16)
    wrapped = DistributedDataParallel(model) if dist.world_size > 1 else model
    optimizer = build_optimizer(master, OPTIMIZER)
    scheduler = build_scheduler(optimizer, SCHEDULE, total_steps)
    pairs = list(zip(model.parameters(), master.parameters(), strict=True))

    def step(images, labels):
        started = time.perf_counter()
        loss = loss_of(wrapped, images.to(torch.bfloat16), labels, dist)
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        for low, high in pairs:
            high.grad = low.grad.float()
            low.grad = None
        nn.utils.clip_grad_norm_(master.parameters(), CLIP)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        with torch.no_grad():
            for low, high in pairs:
                low.copy_(high)
        return loss.detach(), (forward - started, backward - forward, time.perf_counter() - backward)

    return step


def threads() -> list[int]:
    return [torch.get_num_threads(), torch.get_num_interop_threads()]


def build_paths(zero: int, precision: str, dist: DistInfo, total_steps: int, seen: dict) -> dict[str, Step]:
    """Plain path(s) and engine on identical copies of one seeded model."""
    torch.manual_seed(0)
    model = AttentionFaceNet(MODEL)
    plain = copy.deepcopy(model)
    if precision == "fp32":
        paths = {"plain": plain_step(plain, dist, total_steps)}
    else:
        paths = {"plain": plain_bf16_step(plain, dist, total_steps),
                 "autocast": plain_step(copy.deepcopy(model), dist, total_steps, autocast=True)}
    seen["before deepspeed.initialize"] = threads()
    engine = build_engine(model, DeepSpeedConfig(zero_stage=zero, precision=precision, gradient_clipping=CLIP),
                          OPTIMIZER, SCHEDULE, total_steps, IDENTITIES * PER_IDENTITY, dist)
    seen["after deepspeed.initialize"] = threads()
    seen["engine"] = f"{type(engine.optimizer).__name__}({type(engine.basic_optimizer).__name__})"
    paths["engine"] = engine_step(engine, dist)
    return paths


def measure(paths: dict[str, Step], batches: list, warmup: int, rounds: int, steps: int, dist: DistInfo,
            seen: dict) -> dict:
    """Warm-up, then ``rounds`` rounds of ``steps`` steps of each path in turn, the order reversed
    every other round; every path gets the same batches in the same order, so their losses are
    comparable step by step."""
    losses: dict[str, list[torch.Tensor]] = {name: [] for name in paths}
    round_ms: dict[str, list[float]] = {name: [] for name in paths}
    round_cpu_ms: dict[str, list[float]] = {name: [] for name in paths}
    phase_ms: dict[str, list[tuple[float, float, float]]] = {name: [] for name in paths}
    for name, step in paths.items():
        for index in range(warmup):
            losses[name].append(step(*batches[index % len(batches)])[0])
            if name == "engine" and index == 0:
                seen["after the first engine step"] = threads()
    for index in range(rounds):
        order = list(paths.items())
        for name, step in order if index % 2 == 0 else order[::-1]:  # ABBA: no path always goes first
            if dist.world_size > 1:
                torch_dist.barrier()  # both ranks start the round together
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(steps):
                loss, phases = step(*batches[len(losses[name]) % len(batches)])
                losses[name].append(loss)
                phase_ms[name].append(phases)
            round_ms[name].append(1e3 * (time.perf_counter() - started) / steps)
            round_cpu_ms[name].append(1e3 * (time.process_time() - cpu_started) / steps)
    return {
        "round_ms": round_ms,
        "round_cpu_ms": round_cpu_ms,
        "phase_ms": {name: [1e3 * statistics.median(p[i] for p in split) for i in range(3)]
                     for name, split in phase_ms.items()},
        # Over the first steps only: later, bf16 rounding differences grow as any two bf16 runs diverge.
        "max_loss_diff": float((torch.stack(losses["engine"][:COMPARED]) - torch.stack(losses["plain"][:COMPARED]))
                               .abs().max()),
    }


def quiet_deepspeed() -> None:
    """DeepSpeed's per-engine INFO lines, and a deprecation warning its ZeRO raises every step."""
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*all_gather_into_tensor.* is deprecated", category=FutureWarning)


def worker(args: argparse.Namespace) -> None:
    """One process of a setting; rank 0 writes the results as JSON to ``args.out``."""
    seen: dict = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "start": threads()}
    dist = init_distributed()  # imports deepspeed, which probes the accelerators
    seen["after init_distributed"] = threads()
    quiet_deepspeed()
    batches = random_batches(4, dist.rank)
    total_steps = args.warmup + args.rounds * args.steps
    results = []
    for zero, precision in CONFIGS:
        config_seen: dict = {}
        paths = build_paths(zero, precision, dist, total_steps, config_seen)
        measured = measure(paths, batches, args.warmup, args.rounds, args.steps, dist, config_seen)
        results.append({"zero": zero, "precision": precision, "threads_seen": config_seen, **measured})
        if dist.is_main:
            print(f"  ZeRO-{zero} {precision}: done", flush=True)
    if dist.is_main:
        Path(args.out).write_text(json.dumps({"world_size": dist.world_size, "threads_seen": seen,
                                              "configs": results}))
    torch_dist.destroy_process_group()


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, those of this process and its finished children)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    busy = sum(fields) - fields[3] - fields[4]  # less idle and iowait
    own = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy / os.sysconf("SC_CLK_TCK"), sum(usage.ru_utime + usage.ru_stime for usage in own)


def run_setting(world_size: int, threads_per_process: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        worker_args = ["-m", "facetrain.bench_engine", "--worker", "--out", str(out), "--warmup", str(args.warmup),
                       "--rounds", str(args.rounds), "--steps", str(args.steps)]
        if world_size > 1:
            worker_args = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world_size}",
                           *worker_args]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process)}
        subprocess.run([sys.executable, *worker_args], env=env, check=True)
        return json.loads(out.read_text())


def report(world_size: int, threads_per_process: int, result: dict) -> list[str]:
    """Table rows (markdown) of one setting; prints its phase split and thread observations."""
    rows = []
    print(f"\nworld size {world_size}, {threads_per_process} thread(s) per process; "
          f"threads (intra-op, inter-op) seen: {result['threads_seen']}")
    for config in result["configs"]:
        times, cpu = config["round_ms"], config["round_cpu_ms"]
        plain, engine = statistics.median(times["plain"]), statistics.median(times["engine"])
        ratios = [e / p for e, p in zip(times["engine"], times["plain"], strict=True)]
        cpu_ratio = statistics.median(cpu["engine"]) / statistics.median(cpu["plain"])
        autocast = f"{statistics.median(times['autocast']):.1f}" if "autocast" in times else "-"
        rows.append(f"| {world_size} | {threads_per_process} | {config['zero']} | {config['precision']} | "
                    f"{plain:.1f} | {engine:.1f} | {engine / plain:.3f} | {min(ratios):.3f}–{max(ratios):.3f} | "
                    f"{cpu_ratio:.3f} | {autocast} | {config['max_loss_diff']:.1e} |")
        split = "; ".join(f"{name} " + " / ".join(f"{ms:.1f}" for ms in phases)
                          for name, phases in config["phase_ms"].items())
        seen = config["threads_seen"]
        print(f"  ZeRO-{config['zero']} {config['precision']} ({seen.pop('engine')}): forward / backward / step ms "
              f"{split}; threads {seen}")
    return rows


def profile(args: argparse.Namespace) -> None:
    """cProfile of the engine's steps at world size 1: DeepSpeed's own functions, ms per step."""
    dist = init_distributed()
    quiet_deepspeed()
    batches = random_batches(4, dist.rank)
    print(f"cProfile, {torch.get_num_threads()} thread(s), {args.rounds * args.steps} engine steps per "
          "configuration; cumulative ms per step (cProfile inflates Python-heavy code)")
    for zero, precision in CONFIGS:
        step = build_paths(zero, precision, dist, args.warmup + args.rounds * args.steps, {})["engine"]
        for index in range(args.warmup):
            step(*batches[index % len(batches)])
        steps = args.rounds * args.steps
        profiler = cProfile.Profile()
        profiler.enable()
        for index in range(steps):
            step(*batches[index % len(batches)])
        profiler.disable()
        per_step = {f"{Path(file).parent.name}/{Path(file).name}:{line}({name})": 1e3 * cumulative / steps
                    for (file, line, name), (_, _, _, cumulative, _) in pstats.Stats(profiler).stats.items()
                    if "deepspeed" in file and name not in PROFILE_SKIP}
        print(f"\nZeRO-{zero} {precision}")
        for where, ms in sorted(per_step.items(), key=lambda item: -item[1])[:args.top]:
            print(f"  {ms:7.2f}  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 warm-up step, 2 rounds of 2 steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each path first")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of each path")
    parser.add_argument("--steps", type=int, default=4, help="steps per round")
    parser.add_argument("--profile", action="store_true",
                        help="instead: cProfile the engine's steps in this process (world size 1)")
    parser.add_argument("--top", type=int, default=15, help="--profile: functions listed per configuration")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.rounds, args.steps = 1, 2, 2
    if args.worker or args.profile:
        (worker if args.worker else profile)(args)
        return
    parameters = sum(p.numel() for p in AttentionFaceNet(MODEL).parameters())
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; model of {parameters / 1e6:.2f} M "
          f"parameters; {args.warmup} warm-up steps, {args.rounds} rounds of {args.steps} steps per path", flush=True)
    rows, started, (busy, own) = [], time.monotonic(), cpu_seconds()
    for world_size, threads_per_process in SETTINGS:
        print(f"world size {world_size}, OMP_NUM_THREADS={threads_per_process}", flush=True)
        rows += report(world_size, threads_per_process, run_setting(world_size, threads_per_process, args))
    busy_now, own_now = cpu_seconds()
    others = (busy_now - busy) - (own_now - own)
    # The load average counts this benchmark's own processes; the machine's busy time less ours does not.
    print(f"\n{time.monotonic() - started:.0f} s; other processes used {others:.1f} CPU-seconds meanwhile "
          f"({100 * others / (time.monotonic() - started):.1f} % of one core)\n")
    print("| world size | threads | ZeRO | precision | plain ms | engine ms | engine / plain | spread | CPU ratio | "
          f"autocast ms | max loss diff, first {COMPARED} steps |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
