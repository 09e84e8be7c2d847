"""The demo task's data: deterministic, disjoint across ranks, resumable by position."""

import numpy as np
import torch

from facetrain.identity_task import IdentityClassificationConfig, IdentityClassificationTask, InMemoryBatches
from facetrain.synthetic_faces import make_identity_set
from launcher.dist import DistInfo


def rank(r, world=2):
    return DistInfo(rank=r, world_size=world, local_rank=r, device=torch.device("cpu"))


def test_identity_set_is_deterministic_and_identity_contiguous():
    images, labels = make_identity_set(3, 4, 24, seed=5)
    again, _ = make_identity_set(3, 4, 24, seed=5)
    assert images.shape == (12, 24, 24, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again)
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert not np.array_equal(images[0], images[1])  # images of one identity differ


def make_stream(r, position=None, world=2):
    images = torch.arange(40).view(40, 1, 1, 1).expand(40, 2, 2, 3).to(torch.uint8).contiguous()
    labels = torch.arange(40)
    return InMemoryBatches(images, labels, 4, rank(r, world), seed=3, hflip=True, position=position)


def test_ranks_see_disjoint_samples_and_every_sample_once_per_epoch():
    seen = []
    for r in range(2):
        stream = make_stream(r)
        for _ in range(stream.steps_per_epoch):
            seen += next(stream)[1].tolist()
    assert sorted(seen) == list(range(40))


def test_stream_resumes_exactly_from_its_position():
    uninterrupted = make_stream(1)
    expected = [next(uninterrupted) for _ in range(12)]
    first = make_stream(1)
    for _ in range(7):
        next(first)
    resumed = make_stream(1, position=first.state_dict())
    for images, labels in expected[7:]:
        got_images, got_labels = next(resumed)
        assert torch.equal(labels, got_labels) and torch.equal(images, got_images)
    assert resumed.state_dict()["epoch"] == 2  # 5 steps per epoch: crossed two epochs


def test_task_splits_held_out_images_of_the_same_identities():
    task = IdentityClassificationTask(IdentityClassificationConfig(
        name="face_identity", num_identities=3, train_images_per_identity=5, eval_images_per_identity=2,
        image_size=16, batch_size=4))
    assert len(task.train_labels) == 15 and len(task.eval_labels) == 6
    assert set(task.eval_labels.tolist()) == {0, 1, 2}
    logits, embedding = task.build_model()(torch.zeros(2, 3, 16, 16))
    assert logits.shape == (2, 3) and torch.allclose(embedding.norm(dim=1), torch.ones(2))
