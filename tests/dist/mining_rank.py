"""torchrun entry point: cross-rank mining on each rank's half of one global batch (float64)."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from facetrain.triplet import MODES, distributed_triplet_loss, triplet_loss
from launcher.runtime.dist import DistInfo


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    info = DistInfo(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))
    generator = torch.Generator().manual_seed(7)
    rows = 12
    embeddings = torch.randn(world * rows, 16, generator=generator, dtype=torch.float64)
    embeddings = torch.nn.functional.normalize(embeddings, dim=1)
    labels = torch.randint(0, 5, (world * rows,), generator=generator)
    report = {}
    for mining in MODES:
        for squared in (True, False):
            local = embeddings[rank * rows : (rank + 1) * rows].clone().requires_grad_()
            local_labels = labels[rank * rows : (rank + 1) * rows]
            loss, _ = distributed_triplet_loss(local, local_labels, info, 0.3, mining, squared)
            loss.backward()
            losses = [None] * world
            grads = [None] * world
            dist.all_gather_object(losses, loss.item())
            dist.all_gather_object(grads, local.grad)
            if rank == 0:
                whole = embeddings.clone().requires_grad_()
                everyone = torch.arange(len(labels))
                total, count, _ = triplet_loss(whole, labels, whole, labels, everyone, 0.3, mining, squared)
                single = total / count
                single.backward()
                averaged = torch.cat(grads) / world  # what the engine's gradient averaging makes of them
                report[f"{mining}-{squared}"] = {
                    "loss_error": abs(sum(losses) / world - single.item()),
                    "grad_error": (averaged - whole.grad).abs().max().item(),
                    "grad_scale": whole.grad.abs().max().item(),
                }
    if rank == 0:
        Path(sys.argv[1]).write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
