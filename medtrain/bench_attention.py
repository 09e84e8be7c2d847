"""The Soft Attention head's cost: training steps of DenseNet201 + Soft Attention against the plain
networks it is compared with, in alternating rounds.

    python -m medtrain.bench_attention                     # full flavour, 224 px, batch 4: minutes on 2 cores
    python -m medtrain.bench_attention --flavour cpu --size 64 --rounds 1 --steps 1   # smoke run

Three models, built from the model table with the same seed, 3 classes (the figshare brain-tumour set):
- ``densenet201``: the whole plain network (all of block 4, norm5, global average pooling, linear);
- ``densenet201_soft_attention``: the network cut after conv5_block29_1_relu (REFERENCE.md §1.3), then the
  Soft Attention head (K = 16 maps, max-pool + concat, ReLU, dropout, flatten, linear);
- ``same trunk, GAP + linear``: that cut network with a plain head, global average pooling and linear.
The SA model drops the last three dense layers and norm5, so against the whole network it may be cheaper;
against the same trunk the difference is the head's own cost.

One input batch (random images and labels) is shared by all.  A training step is forward, cross-entropy,
backward and an SGD step (lr 0.01, momentum 0.9); forward-only is eval mode under ``torch.inference_mode``.
After untimed warm-up steps of each model, every round times ``--steps`` training steps then ``--steps``
forward passes of each model in turn, the order reversed every other round, so machine-speed drift hits
all alike.  Reported: the median over rounds of the mean time, the ratios of those medians, and the range
of the per-round ratios; also the CPU time other processes took meanwhile.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from facetrain.bench_engine import cpu_seconds
from medtrain.models import MedicalModel, build_model
from medtrain.models.densenet import DenseNetSoftAttention

NUM_CLASSES = 3  # configs/med/tumor_densenet201_sa.yaml
LR, MOMENTUM = 0.01, 0.9
PLAIN, SOFT_ATTENTION, SAME_TRUNK = "densenet201", "densenet201_soft_attention", "same trunk, GAP + linear"
TARGET = 1.05  # the target: the SA head adds at most 5 % to a training step
# (what is compared, numerator, denominator)
COMPARISONS = [
    ("SA model / whole DenseNet201", SOFT_ATTENTION, PLAIN),
    ("SA head / plain head, same trunk", SOFT_ATTENTION, SAME_TRUNK),
]


class SameTrunkPlainHead(MedicalModel):
    """The Soft Attention model's trunk (DenseNet201 cut at conv5_block29_1_relu, its output already batch-
    normalised and ReLU'd) with global average pooling and a linear layer in place of the SA head."""

    def __init__(self, cut_model: DenseNetSoftAttention, num_classes: int):
        super().__init__()
        channels = cut_model.attention.channels
        del cut_model.attention, cut_model.merge, cut_model.dropout, cut_model.classifier
        self.trunk = cut_model
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, images_BCHW: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.classifier(self.trunk.forward_features(images_BCHW).mean((2, 3))), {}


def build_models(flavour: str, size: int) -> dict[str, MedicalModel]:
    models: dict[str, MedicalModel] = {}
    for name in (PLAIN, SOFT_ATTENTION, SAME_TRUNK):
        torch.manual_seed(0)
        if name == PLAIN:
            models[name] = build_model(PLAIN, NUM_CLASSES, flavour)
        else:
            model = build_model(SOFT_ATTENTION, NUM_CLASSES, flavour, image_size=size)
            models[name] = model if name == SOFT_ATTENTION else SameTrunkPlainHead(model, NUM_CLASSES)
    return models


def build_steps(
    models: dict[str, MedicalModel], images: torch.Tensor, labels: torch.Tensor
) -> dict[str, dict[str, Callable[[], None]]]:
    """Per model: ``train`` (forward, cross-entropy, backward, SGD step) and ``forward`` (eval, no autograd)."""

    def train_step(model: MedicalModel, optimizer: torch.optim.Optimizer) -> None:
        model.train()
        loss = F.cross_entropy(model(images)[0], labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def forward(model: MedicalModel) -> None:
        model.eval()
        with torch.inference_mode():
            model(images)

    steps = {}
    for name, model in models.items():
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        steps[name] = {"train": lambda m=model, o=optimizer: train_step(m, o), "forward": lambda m=model: forward(m)}
    return steps


def measure(
    steps: dict[str, dict[str, Callable[[], None]]], warmup: int, rounds: int, per_round: int
) -> dict[str, dict[str, list[float]]]:
    """Per model and kind, the mean ms per call of each round."""
    times: dict[str, dict[str, list[float]]] = {name: {kind: [] for kind in kinds} for name, kinds in steps.items()}
    for kinds in steps.values():
        for kind in kinds.values():
            for _ in range(warmup):
                kind()
    for index in range(rounds):
        order = list(steps) if index % 2 == 0 else list(steps)[::-1]  # no model always goes first
        for name in order:
            for kind, call in steps[name].items():
                started = time.perf_counter()
                for _ in range(per_round):
                    call()
                times[name][kind].append(1e3 * (time.perf_counter() - started) / per_round)
        print(f"  round {index + 1}/{rounds}: " + ", ".join(
            f"{name} {times[name]['train'][-1]:.0f} ms" for name in steps), flush=True)
    return times


def table(models: dict[str, MedicalModel], times: dict[str, dict[str, list[float]]]) -> list[str]:
    """Markdown: one row per model, then one per comparison."""
    median = {name: {kind: statistics.median(values) for kind, values in kinds.items()}
              for name, kinds in times.items()}
    lines = ["| model | parameters | train step ms | forward ms |", "|---|---|---|---|"]
    for name, model in models.items():
        parameters = sum(p.numel() for p in model.parameters())
        lines.append(f"| {name} | {parameters:,} | {median[name]['train']:.1f} | {median[name]['forward']:.1f} |")
    lines += ["", "| comparison | train step ratio | per-round range | forward ratio | per-round range |",
              "|---|---|---|---|---|"]
    for label, numerator, denominator in COMPARISONS:
        cells = []
        for kind in ("train", "forward"):
            ratios = [a / b for a, b in zip(times[numerator][kind], times[denominator][kind], strict=True)]
            cells.append(f"{median[numerator][kind] / median[denominator][kind]:.3f} | "
                         f"{min(ratios):.3f}–{max(ratios):.3f}")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    head = median[SOFT_ATTENTION]["train"] / median[SAME_TRUNK]["train"]
    verdict = "met" if head <= TARGET else "not met"
    lines += ["", f"SA head: {100 * (head - 1):+.1f} % train step time against the same trunk with a plain head "
              f"(target ≤ {100 * (TARGET - 1):.0f} %: {verdict})"]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medtrain.bench_attention", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavour", choices=("full", "cpu"), default="full", help="the model table's flavour")
    parser.add_argument("--size", type=int, default=224, help="square input side in pixels")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps and forwards of each model")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each model")
    parser.add_argument("--steps", type=int, default=3, help="training steps (and forwards) per round")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = build_models(args.flavour, args.size)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    labels = torch.randint(NUM_CLASSES, (args.batch,), generator=generator)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) on {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; flavour {args.flavour}, {args.size} px, batch {args.batch}; {args.warmup} "
          f"warm-up, {args.rounds} rounds of {args.steps} step(s) per model", flush=True)
    started, (busy, own) = time.monotonic(), cpu_seconds()
    times = measure(build_steps(models, images, labels), args.warmup, args.rounds, args.steps)
    busy_now, own_now = cpu_seconds()
    elapsed, others = time.monotonic() - started, (busy_now - busy) - (own_now - own)
    print(f"\n{elapsed:.0f} s; other processes used {others:.1f} CPU-seconds meanwhile "
          f"({100 * others / elapsed:.1f} % of one core)\n")
    print("\n".join(table(models, times)))


if __name__ == "__main__":
    main()
