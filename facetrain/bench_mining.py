"""Benchmark online triplet mining against pytorch-metric-learning and a per-anchor loop.

    python -m facetrain.bench_mining [--rounds 7]

Prints forward + backward time of batch-hard, batch-all and semi-hard mining on 1024 x 128 unit
embeddings (256 identities x 4), for facetrain.triplet, for pytorch-metric-learning (PML, the
library people use: its miner + TripletMarginLoss, squared Euclidean distance, no
re-normalisation) and for a loop that mines one anchor at a time with our definitions; the
three are timed in turn in every round, and each figure is the median over rounds. It checks
that our loss equals PML's where the definitions are equal (batch-hard with PML's MeanReducer,
batch-all as is). PML has no per-pair FaceNet semi-hard miner: its closest, every semi-hard
triplet, is another loss, timed for reference. Then the share of a demo training step
(configs/face/demo.yaml's model and batch, forward + backward, one process) that mining takes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from facetrain.bench_engine import cpu_seconds
from facetrain.model import AttentionFaceNet
from facetrain.model_config import FaceModelConfig
from facetrain.triplet import MODES, triplet_loss

MARGIN = 0.2


def per_anchor_loop(emb: torch.Tensor, labels: torch.Tensor, mining: str, margin: float = MARGIN) -> torch.Tensor:
    """The same definitions, one anchor (and for semi-hard one positive) at a time."""
    terms = []
    for a in range(len(emb)):
        d = (emb - emb[a]).pow(2).sum(1)
        positive = (labels == labels[a]) & (torch.arange(len(emb)) != a)
        negative = labels != labels[a]
        if not positive.any() or not negative.any():
            continue
        if mining == "batch_hard":
            terms.append(F.relu(d[positive].max() - d[negative].min() + margin)[None])
        elif mining == "batch_all":
            losses = F.relu(d[positive][:, None] - d[negative][None, :] + margin).flatten()
            terms.append(losses[losses > 0])  # batch-all averages the non-zero triplets
        else:
            for p in positive.nonzero().flatten():
                farther = negative & (d > d[p])
                d_an = d[farther].min() if farther.any() else d[negative].max()
                terms.append(F.relu(d[p] - d_an + margin)[None])
    return torch.cat(terms).mean()


def ours(emb: torch.Tensor, labels: torch.Tensor, mining: str) -> torch.Tensor:
    total, count, _ = triplet_loss(emb, labels, emb, labels, torch.arange(len(emb)), MARGIN, mining, True)
    return total / count


def build_pml(mining: str):
    """PML's miner + TripletMarginLoss for ``mining``, as a function of (embeddings, labels)."""
    try:
        from pytorch_metric_learning import distances, losses, miners, reducers
    except ImportError as error:
        raise SystemExit("the PML baseline needs pytorch-metric-learning: pip install -e '.[dev]'") from error
    # Squared Euclidean like ours; our embeddings are unit vectors already (PML would re-normalise).
    distance = distances.LpDistance(normalize_embeddings=False, power=2)
    if mining == "batch_hard":  # our mean is over every anchor, PML's default reducer over the non-zero ones
        miner = miners.BatchHardMiner(distance=distance)
        loss = losses.TripletMarginLoss(margin=MARGIN, distance=distance, reducer=reducers.MeanReducer())
    else:
        kind = "all" if mining == "batch_all" else "semihard"
        miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets=kind, distance=distance)
        loss = losses.TripletMarginLoss(margin=MARGIN, distance=distance)
    return lambda emb, labels: loss(emb, labels, miner(emb, labels))


def timed_once(function) -> tuple[float, float]:
    """(seconds of forward + backward, the loss)."""
    started = time.perf_counter()
    loss = function()
    loss.backward()
    return time.perf_counter() - started, loss.item()


def compare(base: torch.Tensor, labels: torch.Tensor, rounds: int, loop_rounds: int) -> dict:
    """Per mining mode: the three implementations timed in turn each round; times and losses."""
    pml = {mining: build_pml(mining) for mining in MODES}
    contenders = {
        "ours": lambda m: ours(base.clone().requires_grad_(), labels, m),
        "pml": lambda m: pml[m](base.clone().requires_grad_(), labels),
        "loop": lambda m: per_anchor_loop(base.clone().requires_grad_(), labels, m),
    }
    for mining in MODES:  # warm-up: first calls allocate and load kernels
        contenders["ours"](mining).backward()
        contenders["pml"](mining).backward()
    results = {(mining, name): ([], []) for mining in MODES for name in contenders}
    for round_index in range(rounds):
        for mining in MODES:
            for name, function in contenders.items():
                if name == "loop" and round_index >= loop_rounds:
                    continue
                seconds, value = timed_once(lambda f=function, m=mining: f(m))
                results[mining, name][0].append(seconds)
                results[mining, name][1].append(value)
    return results


def report(results: dict, batch: str, rounds: int, loop_rounds: int) -> None:
    median = {key: statistics.median(times) for key, (times, _) in results.items()}
    print(f"\nmining {batch}, forward + backward, median of {rounds} alternating rounds ({loop_rounds} for the "
          f"loop), {torch.get_num_threads()} threads on {os.cpu_count()} cores")
    print(f"{'mining':<11} {'facetrain':>10} {'PML':>11} {'loop':>11} {'PML/ours':>9} {'per round':>12} "
          f"{'loop/ours':>10} {'loss ours':>10} {'loss PML':>10}")
    for mining in MODES:
        fast, pml, loop = (median[mining, name] for name in ("ours", "pml", "loop"))
        ratios = [b / a for a, b in zip(results[mining, "ours"][0], results[mining, "pml"][0], strict=True)]
        spread = f"{min(ratios):.1f}-{max(ratios):.1f}x"
        loss_ours, loss_pml = results[mining, "ours"][1][0], results[mining, "pml"][1][0]
        print(f"{mining:<11} {fast * 1e3:>7.1f} ms {pml * 1e3:>8.1f} ms {loop * 1e3:>8.1f} ms {pml / fast:>8.1f}x "
              f"{spread:>12} {loop / fast:>9.0f}x {loss_ours:>10.6f} {loss_pml:>10.6f}")
    for mining in ("batch_hard", "batch_all"):  # the same definition: the same loss, to float32 rounding
        loss_ours, loss_pml = results[mining, "ours"][1][0], results[mining, "pml"][1][0]
        assert abs(loss_ours - loss_pml) <= 1e-5 * abs(loss_pml), (mining, loss_ours, loss_pml)
    print("batch_hard and batch_all: equal to PML (checked); semi_hard: PML averages every semi-hard triplet, "
          "ours the nearest farther negative per positive pair (FaceNet), another loss")


def demo_step_share(repeats: int) -> None:
    """Share of a demo step: the demo's model and per-rank batch (8 x 4 at 64 px); mining of the
    32 local anchors against the 64 embeddings of the 2-rank global batch."""
    generator = torch.Generator().manual_seed(1)
    model = AttentionFaceNet(FaceModelConfig(backbone="small", image_size=64, freeze="none"))
    images = torch.randn(32, 3, 64, 64)
    step_labels = torch.arange(8).repeat_interleave(4)
    global_labels = torch.cat([step_labels, step_labels + 8])
    other_rank = F.normalize(torch.randn(32, 128, generator=generator), dim=1)

    def semi_hard(local: torch.Tensor) -> torch.Tensor:
        references = torch.cat([local, other_rank])
        total, count, _ = triplet_loss(local, step_labels, references, global_labels, torch.arange(32), MARGIN,
                                       "semi_hard", True)
        return total / count

    def mining_only() -> torch.Tensor:
        return semi_hard(F.normalize(torch.randn(32, 128, generator=generator), dim=1).requires_grad_())

    def whole_step() -> torch.Tensor:
        return semi_hard(model(images)[0])

    whole_step().backward()  # warm-up
    mine = statistics.median(timed_once(mining_only)[0] for _ in range(repeats * 4))
    step = statistics.median(timed_once(whole_step)[0] for _ in range(repeats))
    print(f"\ndemo step (small attention FaceNet, 32 images of 64 px, forward + backward): {step * 1e3:.1f} ms; "
          f"semi-hard mining in it: {mine * 1e3:.2f} ms = {100 * mine / step:.1f} % of the step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--loop-rounds", type=int, default=3, help="the per-anchor loop takes seconds a round")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(256).repeat_interleave(4)
    base = F.normalize(torch.randn(1024, 128, generator=generator), dim=1)
    loop_rounds = min(args.loop_rounds, args.rounds)
    started, (busy, own) = time.monotonic(), cpu_seconds()
    results = compare(base, labels, args.rounds, loop_rounds)
    busy_now, own_now = cpu_seconds()
    report(results, "1024 x 128 embeddings (256 identities x 4)", args.rounds, loop_rounds)
    others = (busy_now - busy) - (own_now - own)  # this VM's speed drifts with its neighbours' load
    print(f"{time.monotonic() - started:.0f} s; other processes used {others:.1f} CPU-seconds meanwhile")
    demo_step_share(args.rounds)


if __name__ == "__main__":
    main()
