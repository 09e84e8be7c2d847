"""A test task: the face task, writing the sample indices of every batch it trains on to
``$SAMPLE_LOG_DIR/rank<R>.jsonl`` (appending, so a restarted run adds to the same file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from facetrain.face_task import FaceTripletTask


class SampleRecordingTask(FaceTripletTask):
    def train_batches(self, position):
        self.loader = super().train_batches(position)
        self.sample_log = Path(os.environ["SAMPLE_LOG_DIR"]) / f"rank{self.dist.rank}.jsonl"
        return self.loader

    def step(self, model, batch):
        with self.sample_log.open("a") as log:  # batch number = batches this rank's reader has handed out
            log.write(json.dumps({"batch": self.loader.consumed, "index": batch["index"].tolist()}) + "\n")
        return super().step(model, batch)
