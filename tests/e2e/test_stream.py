"""The streaming reader over real shards (built by `shards build` from generated datasets)."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shards.availability import MissingData
from shards.cli import main
from shards.eval_reader import eval_loader
from shards.loader import StreamLoader
from shards.stream import class_weights
from shards.stream_config import AugmentConfig, StreamConfig
from shards.verify import read_samples
from tests.fixtures import datasets

EXACT = AugmentConfig(size=32, crop="center", hflip=False)
"""No randomness: every batch image must be the decode of its key's source image."""


def build(src: Path, out: Path, *options: str) -> Path:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["build", "imagefolder", str(src), str(out), *options]) == 0
    return out


@pytest.fixture(scope="module")
def face_shards(tmp_path_factory) -> Path:
    """24 identities with 2..13 images each, in 9 shards of uneven size."""
    root = tmp_path_factory.mktemp("stream")
    for k, images in enumerate(datasets.faces(24, 13, size=40)):
        folder = root / "src" / f"id{k:03d}"
        folder.mkdir(parents=True)
        for n, image in enumerate(images[: 2 + (k * 5) % 12]):
            image.save(folder / f"{n}.jpg", quality=90)
    return build(root / "src", root / "out", "--maxcount", "20")


def config(shards: Path, **overrides) -> StreamConfig:
    values = dict(shards=str(shards), identities_per_batch=4, images_per_identity=3, buffer_samples=48,
                  num_workers=2, augment=AugmentConfig(size=32))
    return StreamConfig(**{**values, **overrides})


def source_truth(shards: Path, source_root: Path) -> dict[str, tuple[np.ndarray, int]]:
    """key -> (the source file decoded by PIL, resized and centre-cropped to 32 px; the manifest
    id of the identity folder it lies in), from the shards' json and the source tree: nothing of
    the reader's own code path."""
    manifest = json.loads((shards / "manifest.json").read_text())
    truth = {}
    for shard in manifest["shards"]:
        samples, error = read_samples(shards / shard["name"])
        assert error is None
        for key, fields in samples.items():
            source = json.loads(fields["json"])["source"]
            image = Image.open(source_root / source).convert("RGB")
            assert image.width == image.height
            image = image.resize((32, 32), Image.Resampling.BILINEAR) if image.width != 32 else image
            truth[key] = (np.asarray(image), manifest["labels"][source.split("/")[0]]["id"])
    return truth


def assert_images_are_their_keys(batch: dict, truth: dict) -> None:
    images = batch["image"].permute(0, 2, 3, 1).numpy()
    for image, key, label in zip(images, batch["key"], batch["label"].tolist(), strict=True):
        expected_image, expected_label = truth[key]
        assert label == expected_label, key
        assert np.abs(image.astype(int) - expected_image.astype(int)).max() <= 2, key  # two libjpeg builds


@pytest.mark.parametrize("workers", [0, 2])
def test_every_batch_image_is_the_decode_of_its_key_and_carries_its_label(face_shards, workers):
    truth = source_truth(face_shards, face_shards.parent / "src")
    distinct = [truth[k][0].astype(int) for k in sorted(truth)[:40]]
    assert min(np.abs(a - b).max() for a, b in itertools.pairwise(distinct)) > 20  # a shift would show
    loader = StreamLoader(config(face_shards, num_workers=workers, augment=EXACT), rank=0, world_size=1)
    for _ in range(25):  # past the workers' 3 shared slots each: reused slots hold the new batch's images
        assert_images_are_their_keys(next(loader), truth)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_are_full_p_by_k(face_shards, workers):
    loader = StreamLoader(config(face_shards, num_workers=workers), rank=0, world_size=1)
    coverage = []
    for number in range(1, 31):
        batch = next(loader)
        assert batch["image"].shape == (12, 3, 32, 32)
        counts = Counter(batch["label"].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}
        if (seen := loader.epoch_coverage()) is not None:
            coverage.append((number, seen["identities"].float().mean().item()))
    assert [number for number, _ in coverage] == list(range(loader.steps_per_epoch, 31, loader.steps_per_epoch))
    assert all(share > 0.5 for _, share in coverage)  # of the identities in the split
    assert loader.stats()["peak_samples"] <= 48


def test_batches_kept_by_the_consumer_stay_intact_while_workers_run_ahead(face_shards):
    """Workers reuse shared image slots; what the consumer holds must be its own copy."""
    loader = StreamLoader(config(face_shards), rank=0, world_size=1)
    kept = [next(loader) for _ in range(12)]  # more than workers x slots
    again = StreamLoader(config(face_shards), rank=0, world_size=1)
    for batch in kept:
        fresh = next(again)
        assert batch["key"] == fresh["key"] and torch.equal(batch["image"], fresh["image"])
    assert kept[0]["image"].shape == (12, 3, 32, 32)
    assert kept[0]["image"].is_contiguous(memory_format=torch.channels_last)


def test_resume_continues_with_the_same_keys(face_shards):
    uninterrupted = StreamLoader(config(face_shards), rank=1, world_size=2)
    expected = [next(uninterrupted)["key"] for _ in range(17)]
    first = StreamLoader(config(face_shards), rank=1, world_size=2)
    for _ in range(11):  # odd: the next batch comes from logical worker 1
        next(first)
    position = json.loads(json.dumps(first.state_dict()))  # what a checkpoint keeps
    resumed = StreamLoader(config(face_shards), rank=1, world_size=2, position=position)
    assert [next(resumed)["key"] for _ in range(6)] == expected[11:]


def test_resume_with_other_workers_is_refused(face_shards):
    position = StreamLoader(config(face_shards), rank=0, world_size=1).state_dict()
    with pytest.raises(ValueError, match="num_workers 2 -> 3; resume with the saved values"):
        StreamLoader(config(face_shards, num_workers=3), rank=0, world_size=1, position=position)


def test_too_few_identities_is_a_clear_error(face_shards):
    with pytest.raises(ValueError, match=r"only 2 identities have >= 13 images; a batch needs 4"):
        StreamLoader(config(face_shards, images_per_identity=13, small_identities="skip", buffer_samples=64), 0, 1)


def damaged_copy(face_shards: Path, tmp_path: Path) -> tuple[Path, set[str]]:
    """A copy of the shards with two images zeroed in the first train shard and the second train
    shard's tail zeroed (same size: it reads as a shorter archive); returns the zeroed images' keys."""
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in face_shards.iterdir():
        if path.is_file():
            (damaged / path.name).write_bytes(path.read_bytes())
    first = damaged / "train-000000.tar"
    samples, _ = read_samples(first)
    by_label: dict[bytes, list] = {}
    for fields in samples.values():
        by_label.setdefault(fields["cls"], []).append(fields)
    victims = [group[0] for group in by_label.values() if len(group) >= 5][:2]  # repaired from their own identity
    assert len(victims) == 2
    data = first.read_bytes()
    for victim in victims:
        data = data.replace(victim["jpg"], b"\0" * len(victim["jpg"]), 1)
    first.write_bytes(data)
    second = damaged / "train-000001.tar"
    with tarfile.open(second) as tar:  # zeroed from the header of its fourth sample on
        cut = next(m.offset for m in tar.getmembers() if m.name.startswith(f"{sorted(read_samples(second)[0])[3]}."))
    data = second.read_bytes()
    second.write_bytes(data[:cut] + b"\0" * (len(data) - cut))
    return damaged, {json.loads(v["json"])["key"] for v in victims}


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_and_truncated_shards_are_counted_and_batches_stay_full(face_shards, tmp_path, workers):
    damaged, victim_keys = damaged_copy(face_shards, tmp_path)
    truth = source_truth(face_shards, face_shards.parent / "src")
    loader = StreamLoader(config(damaged, num_workers=workers, augment=EXACT, max_missing_fraction=0.5), 0, 1)
    for _ in range(40):
        batch = next(loader)
        counts = Counter(batch["label"].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}
        assert not victim_keys & set(batch["key"])
        assert_images_are_their_keys(batch, truth)  # a repaired slot holds its donor's pixels, not stale ones
    stats = loader.stats()
    assert stats["corrupt"] >= 2 and stats["truncated_shards"] >= 1
    held = json.loads((damaged / "manifest.json").read_text())["shards"][1]["count"]
    assert 0 < stats["truncated_samples"] <= 3 * held  # three passes over the shard at most in 480 samples
    assert stats["read"] >= 480


def test_losing_more_samples_while_reading_than_allowed_stops_at_the_epoch_end(face_shards, tmp_path):
    damaged, _ = damaged_copy(face_shards, tmp_path)
    loader = StreamLoader(config(damaged, num_workers=0), 0, 1)  # max_missing_fraction 0.01
    with pytest.raises(MissingData, match=r"split 'train': rank 0 lost \d+ of \d+ samples \(\d+\.\d%, more than the "
                       r"1\.0% allowed by max_missing_fraction\) to undecodable images or damaged shards"):
        for _ in range(loader.steps_per_epoch):
            next(loader)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_batch_without_one_decodable_image_stops_the_rank_with_one_line(face_shards, tmp_path, workers):
    """Nothing to repair its slots from (a set in a format the reader cannot decode): the rank
    stops in the consumer with the reason, not with a traceback from a DataLoader worker."""
    undecodable = tmp_path / "undecodable"
    shutil.copytree(face_shards, undecodable)
    for shard in undecodable.glob("train-*.tar"):
        data = shard.read_bytes()
        for fields in read_samples(shard)[0].values():
            data = data.replace(fields["jpg"], b"\0" * len(fields["jpg"]), 1)
        shard.write_bytes(data)
    loader = StreamLoader(config(undecodable, num_workers=workers, max_missing_fraction=1.0), 0, 1)
    with pytest.raises(MissingData) as stopped:
        next(loader)
    assert re.fullmatch(
        rf"{re.escape(str(undecodable))} split 'train': every image of a batch of 12 is undecodable \(first \S+: "
        rf"cannot decode jpg: .+\); shards verify {re.escape(str(undecodable))} checks every file", str(stopped.value))
    assert loader.stats()["corrupt"] >= 12
    loader.close()


def test_a_process_that_exits_without_closing_its_loader_ends(face_shards, subprocess_env):
    """Python's exit SIGTERMs the reader's worker processes and waits for them; they heed SIGTERM
    only once their loader is closing, so a loader left open (an error path, a script) must be
    closed at exit, or the process waits forever."""
    script = ("import sys; sys.path[:0] = " + repr(sys.path) + "; "
              "from shards.loader import StreamLoader; from shards.stream_config import StreamConfig, AugmentConfig; "
              f"loader = StreamLoader(StreamConfig(shards={str(face_shards)!r}, identities_per_batch=4, "
              "images_per_identity=3, buffer_samples=48, num_workers=2, augment=AugmentConfig(size=32)), 0, 1); "
              "next(loader); _kept_alive = [loader]; print('read', flush=True)")
    proc = subprocess.run([sys.executable, "-c", script], env=subprocess_env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout == "read\n", proc.stderr[-2000:]


def test_missing_shards_are_left_out_and_counted_within_the_allowance_and_refused_beyond(face_shards, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(face_shards, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    gone = manifest["shards"][3]
    assert gone["split"] == "train"
    (copy / gone["name"]).unlink()
    with pytest.raises(MissingData) as refused:
        StreamLoader(config(copy, num_workers=0), 0, 1)
    total = manifest["splits"]["train"]["samples"]
    assert str(refused.value) == (
        f"{copy}: split 'train' is missing {gone['count']} of {total} samples ({gone['count'] / total:.1%}, more "
        f"than the 1.0% allowed by max_missing_fraction) in 1 of 9 shards: {copy / gone['name']} (missing)")

    loader = StreamLoader(config(copy, num_workers=0, max_missing_fraction=0.2), 0, 1)
    gone_keys = set(read_samples(face_shards / gone["name"])[0])
    for _ in range(loader.steps_per_epoch):
        assert not gone_keys & set(next(loader)["key"])
    assert loader.stats()["missing_shards"] == 1 and loader.stats()["missing_samples"] == gone["count"]


def test_shuffle_mode_balances_classes(tmp_path):
    for label, count in (("common", 60), ("rare", 12)):
        (tmp_path / "src" / label).mkdir(parents=True)
        for n in range(count):
            Image.fromarray(np.full((16, 16, 3), n, np.uint8)).save(tmp_path / "src" / label / f"{n}.png")
    shards = build(tmp_path / "src", tmp_path / "out", "--maxcount", "10")

    def rare_fraction(balance: str) -> float:
        loader = StreamLoader(config(shards, mode="shuffle", batch_size=8, buffer_samples=32, class_balance=balance,
                                     num_workers=0), rank=0, world_size=1)
        labels = np.concatenate([next(loader)["label"].numpy() for _ in range(60)])
        return float((labels == 1).mean())  # "rare" sorts after "common": id 1

    assert rare_fraction("none") == pytest.approx(12 / 72, abs=0.07)
    assert rare_fraction("oversample") == pytest.approx(0.5, abs=0.1)
    assert rare_fraction("undersample") == pytest.approx(0.5, abs=0.1)


def test_undersampling_thins_the_large_classes_and_oversampling_repeats_the_small_ones():
    """The two balances draw the classes equally often from different streams: undersampling
    keeps each sample of the smallest class once and a share of the others, oversampling repeats
    the smaller classes up to the largest."""
    counts = {0: 60, 1: 12, 2: 30}
    assert class_weights(counts, "undersample") == {0: pytest.approx(0.2), 1: 1.0, 2: pytest.approx(0.4)}
    assert class_weights(counts, "oversample") == {0: 1.0, 1: 5.0, 2: 2.0}
    assert class_weights(counts, "none") == {}


def test_evaluation_sees_every_sample_exactly_once_across_ranks(face_shards):
    keys = []
    for rank in range(2):
        for batch in eval_loader(str(face_shards), "train", rank, 2, batch_size=7, augment=AugmentConfig(size=32),
                                 num_workers=2):
            keys += batch["key"]
            assert batch["group"] and len(batch["group"]) == len(batch["key"])
    manifest = json.loads((face_shards / "manifest.json").read_text())
    assert len(keys) == len(set(keys)) == sum(s["count"] for s in manifest["shards"])
