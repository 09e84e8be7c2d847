"""torchrun entry point: one rank iterating the StreamLoader with a collective on every step.

    stream_rank.py SHARDS OUT_JSON STEPS [POSITION_JSON]
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from launcher.runtime.dist import DistInfo
from launcher.runtime.loop import reduce_coverage
from shards.loader import StreamLoader
from shards.stream_config import AugmentConfig, StreamConfig


def main() -> None:
    shards, out, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    info = DistInfo(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))
    position = None
    if len(sys.argv) > 4:
        position = json.loads(Path(sys.argv[4]).read_text())[str(rank)]["state"]
    config = StreamConfig(shards=shards, identities_per_batch=3, images_per_identity=2, buffer_samples=24,
                          num_workers=2, open_shards=2, augment=AugmentConfig(size=24))
    loader = StreamLoader(config, rank, world, position=position)
    keys, coverage, epoch_ends = [], [], []
    for step in range(1, steps + 1):
        batch = next(loader)
        step_total = torch.tensor([1.0])
        dist.all_reduce(step_total)  # would hang if a rank ran out of batches
        assert step_total.item() == world
        keys.append(batch["key"])
        if (seen := loader.epoch_coverage()) is not None:  # the training loop's union over ranks
            coverage.append(reduce_coverage(seen, info))
            epoch_ends.append(step)
    result = {"keys": keys, "state": loader.state_dict(), "steps_per_epoch": loader.steps_per_epoch,
              "coverage": coverage,
              "epoch_ends": epoch_ends}
    gathered = [None] * world
    dist.all_gather_object(gathered, result)
    if rank == 0:
        out.write_text(json.dumps({str(r): g for r, g in enumerate(gathered)}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
