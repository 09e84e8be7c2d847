"""The engine benchmark compares like with like: its plain PyTorch path and the DeepSpeed engine
train the same model identically, so the timing ratio is the engine's own cost."""

import pytest
import torch
import torch.distributed as torch_dist

from facetrain.bench_engine import build_paths, random_batches
from launcher.runtime.dist import free_port, init_distributed


def test_plain_and_engine_paths_give_the_same_losses(monkeypatch):
    # A process group of one; monkeypatch removes the variables init_distributed would leave behind.
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steady on a busy 2-core machine
    dist = init_distributed()
    try:
        seen: dict = {}
        paths = build_paths(0, "fp32", dist, total_steps=10, seen=seen)
        losses = {name: [float(step(*batch)[0]) for batch in random_batches(2, dist.rank)]
                  for name, step in paths.items()}
    finally:
        torch_dist.destroy_process_group()
        torch.set_num_threads(threads)
    assert seen["engine"] == "AdamW(AdamW)"  # ZeRO-0 fp32: DeepSpeed steps our optimizer itself
    # The second loss follows one update: equal losses mean the same AdamW step at the same rate.
    assert losses["engine"] == pytest.approx(losses["plain"], rel=1e-6)
