"""Benchmark online triplet mining, side by side with a straightforward per-anchor loop.

    python -m facetrain.bench_mining [--repeats 5]

Prints forward + backward time of batch-hard and semi-hard mining on 1024 x 128 unit embeddings
(256 identities x 4), for facetrain.triplet and for a loop that mines one anchor at a time
with the same definitions; and the share of a demo training step (configs/face/demo.yaml's
model and batch, forward + backward, one process) that mining takes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from facetrain.model import AttentionFaceNet
from facetrain.model_config import FaceModelConfig
from facetrain.triplet import triplet_loss


def per_anchor_loop(emb: torch.Tensor, labels: torch.Tensor, mining: str, margin: float = 0.2) -> torch.Tensor:
    """The same definitions, one anchor (and for semi-hard one positive) at a time."""
    terms = []
    for a in range(len(emb)):
        d = (emb - emb[a]).pow(2).sum(1)
        positive = (labels == labels[a]) & (torch.arange(len(emb)) != a)
        negative = labels != labels[a]
        if not positive.any() or not negative.any():
            continue
        if mining == "batch_hard":
            terms.append(F.relu(d[positive].max() - d[negative].min() + margin))
            continue
        for p in positive.nonzero().flatten():
            farther = negative & (d > d[p])
            d_an = d[farther].min() if farther.any() else d[negative].max()
            terms.append(F.relu(d[p] - d_an + margin))
    return torch.stack(terms).mean()


def ours(emb: torch.Tensor, labels: torch.Tensor, mining: str) -> torch.Tensor:
    total, count, _ = triplet_loss(emb, labels, emb, labels, torch.arange(len(emb)), 0.2, mining, True)
    return total / count


def timed(function, repeats: int) -> float:
    """Median seconds of forward + backward."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function().backward()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(256).repeat_interleave(4)
    base = F.normalize(torch.randn(1024, 128, generator=generator), dim=1)
    print(f"\nmining 1024 x 128 embeddings (256 identities x 4), forward + backward, median of {args.repeats}, "
          f"{torch.get_num_threads()} threads on {os.cpu_count()} cores")
    print(f"{'mining':<12} {'facetrain.triplet':>18} {'per-anchor loop':>16} {'speed-up':>9}")
    for mining in ("batch_hard", "semi_hard"):
        fast = timed(lambda m=mining: ours(base.clone().requires_grad_(), labels, m), args.repeats)
        slow = timed(lambda m=mining: per_anchor_loop(base.clone().requires_grad_(), labels, m),
                     max(1, args.repeats // 2))
        print(f"{mining:<12} {fast * 1e3:>15.1f} ms {slow * 1e3:>13.1f} ms {slow / fast:>8.0f}x")

    # Share of a demo step: the demo's model and per-rank batch (8 x 4 at 64 px); mining of the
    # 32 local anchors against the 64 embeddings of the 2-rank global batch.
    model = AttentionFaceNet(FaceModelConfig(backbone="small", image_size=64, freeze="none"))
    images = torch.randn(32, 3, 64, 64)
    step_labels = torch.arange(8).repeat_interleave(4)
    global_labels = torch.cat([step_labels, step_labels + 8])
    other_rank = F.normalize(torch.randn(32, 128, generator=generator), dim=1)

    def mining_only() -> torch.Tensor:
        local = F.normalize(torch.randn(32, 128, generator=generator), dim=1).requires_grad_()
        references = torch.cat([local, other_rank])
        total, count, _ = triplet_loss(local, step_labels, references, global_labels, torch.arange(32), 0.2,
                                       "semi_hard", True)
        return total / count

    def whole_step() -> torch.Tensor:
        embedding, _ = model(images)
        references = torch.cat([embedding, other_rank])
        total, count, _ = triplet_loss(embedding, step_labels, references, global_labels, torch.arange(32), 0.2,
                                       "semi_hard", True)
        return total / count

    whole_step().backward()  # warm-up
    mine, step = timed(mining_only, args.repeats * 4), timed(whole_step, args.repeats)
    print(f"\ndemo step (small attention FaceNet, 32 images of 64 px, forward + backward): {step * 1e3:.1f} ms; "
          f"semi-hard mining in it: {mine * 1e3:.2f} ms = {100 * mine / step:.1f} % of the step")


if __name__ == "__main__":
    main()
