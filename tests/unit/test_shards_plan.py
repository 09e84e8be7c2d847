"""Pure pieces of shard building: keys, group splits, shard plans, the similarity transform."""

import numpy as np
import pytest

from shards.align import TEMPLATES, similarity_transform
from shards.items import SourceItem, make_key
from shards.options import parse_split
from shards.plan import assign_splits, plan_shards


def items(groups: dict[str, int], size: int = 10) -> list[SourceItem]:
    return [SourceItem(f"{g}_{n}", f"/{g}/{n}.jpg", g, g, size) for g, count in groups.items() for n in range(count)]


def test_keys_are_webdataset_safe():
    assert make_key("0000045/001.jpg") == "0000045_001"
    assert make_key("n000002/0001_01.jpg") == "n000002_0001_01"
    assert make_key("Name.With.Dots/img.v2.png") == "Name_With_Dots_img_v2"


def test_group_split_is_disjoint_seeded_and_follows_ratios():
    data = items({f"id{k:03d}": 1 + k % 4 for k in range(100)})
    split_of = assign_splits(data, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    groups = {}
    for item in data:
        groups.setdefault(item.group, set()).add(split_of[item.key])
    assert all(len(s) == 1 for s in groups.values())
    per_split = [sum(1 for s in groups.values() if split in s) for split in ("train", "val", "test")]
    assert per_split == [80, 10, 10]
    assert assign_splits(data, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1) == split_of
    assert assign_splits(data, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=2) != split_of


def test_official_split_is_kept_without_ratios():
    data = [SourceItem("a", "/a", "x", "x", 1, {"official_split": "test"}), SourceItem("b", "/b", "y", "y", 1)]
    assert assign_splits(data, None, 0) == {"a": "test", "b": "train"}


def test_plan_is_identity_contiguous_and_respects_count_and_size():
    data = items({"b": 3, "a": 4, "c": 2}, size=10)
    plans = plan_shards(data, {i.key: "train" for i in data}, maxcount=3, maxsize=25)
    labels = [i.label for p in plans for i in p.items]
    assert labels == sorted(labels)
    assert all(len(p.items) <= 3 and sum(i.size for i in p.items) <= 25 for p in plans)
    assert [p.name for p in plans] == [f"train-{n:06d}.tar" for n in range(len(plans))]
    huge = items({"z": 2}, size=100)  # an item bigger than maxsize still gets a shard of its own
    assert [len(p.items) for p in plan_shards(huge, {i.key: "s" for i in huge}, 10, 50)] == [1, 1]


@pytest.mark.parametrize("spec, message", [("train=0.5,val=0.4", "sum to 0.9"), ("train", "NAME=RATIO"),
                                           ("train=x", "NAME=RATIO")])
def test_bad_split_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_split(spec)


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 200, size=(5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -7.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = scale * source @ rotation.T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_templates_put_the_eyes_level_and_centred():
    for points, size in TEMPLATES.values():
        left_eye, right_eye = points[0], points[1]
        assert abs(left_eye[1] - right_eye[1]) < 0.01 * size
        assert abs((left_eye[0] + right_eye[0]) / 2 - size / 2) < 0.02 * size
