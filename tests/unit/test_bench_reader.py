"""The reader benchmark's webdataset baseline reads what a correct webdataset setup reads: with two
DataLoader workers, every sample once per pass (each worker its own shards), decoded to the same crops."""

import contextlib
import io
from collections import Counter

import torch
from torch.utils.data import DataLoader

from shards.bench import DEMO_AUGMENT, make_images, webdataset_pipeline
from shards.cli import main as shards_main


def test_webdataset_workers_split_the_shards_and_crop_like_the_reader(tmp_path):
    src, out = tmp_path / "images", tmp_path / "shards"
    make_images(src, 240, per_identity=20, unique=24)  # 12 identities, 6 shards of 40
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        shards_main(["build", "imagefolder", str(src), str(out), "--maxcount", "40"])
    urls = sorted(str(path) for path in out.glob("train-*.tar"))
    assert len(urls) == 6
    for reader_decoder in (False, True):
        pipeline = webdataset_pipeline(urls, reader_decoder, batch_size=20, repeat=False)
        batches = list(DataLoader(pipeline, batch_size=None, num_workers=2))
        labels = Counter(label for _, batch_labels in batches for label in batch_labels.tolist())
        assert labels == {label: 20 for label in range(12)}  # 40 each if both workers read every shard
        images = batches[0][0]
        assert images.shape == (20, DEMO_AUGMENT.size, DEMO_AUGMENT.size, 3) and images.dtype == torch.uint8
