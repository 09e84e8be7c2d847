"""Which worker failures are reported as a lost peer (one line) rather than a stack trace."""

import torch.distributed as torch_dist

from launcher.runtime.train import lost_a_peer


def test_a_peer_that_went_away_is_recognised():
    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:4499: "
                        "Connection reset by peer. This is typically caused by a remote worker hanging")
    assert lost_a_peer(gloo)
    assert lost_a_peer(torch_dist.DistError("NCCL communicator was aborted"))


def test_other_failures_are_not():
    assert not lost_a_peer(RuntimeError("CUDA out of memory"))
    assert not lost_a_peer(ValueError("gloo peer"))  # only collectives' RuntimeErrors
