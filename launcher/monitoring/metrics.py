"""What one rank tells Prometheus: the metric objects and the loop's calls that update them.

Base units and conventional suffixes; no labels beyond a few fixed names (the rank, node and
job labels come from the scrape targets, see launcher/monitoring/exporter.py). Throughput per rank is
``rate(facetrain_samples_total[1m])``; the step-time histogram counts only training time
(fetch, forward, backward, update), like the loop's own samples/s.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import prometheus_client
import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

if TYPE_CHECKING:
    from launcher.runtime.task import BatchStream

# "_created" series double every counter and histogram for no use on dashboards.
prometheus_client.disable_created_metrics()

STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class JobMetrics:
    """The metrics of one rank, on their own registry (served by the exporter, pushed at the end)."""

    def __init__(self, cuda: bool) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes, CPU seconds, open fds
        self.info = Info("facetrain_job", "The task and world size of this run", registry=r)
        self.samples = Counter("facetrain_samples", "Training samples this rank has processed", registry=r)
        self.steps = Counter("facetrain_steps", "Optimizer steps this process has completed", registry=r)
        self.step = Gauge("facetrain_step", "Optimizer steps of the run so far (continues across resumes)",
                          registry=r)
        self.target_steps = Gauge("facetrain_target_steps", "Optimizer steps the run is configured for", registry=r)
        self.step_seconds = Histogram("facetrain_step_duration_seconds", "Training time of one optimizer step",
                                      buckets=STEP_BUCKETS, registry=r)
        self.data_wait = Histogram("facetrain_data_wait_seconds", "Time one optimizer step waited for the reader",
                                   buckets=WAIT_BUCKETS, registry=r)
        self.loss = Gauge("facetrain_loss", "Training loss at the last log line (mean over its window and the ranks)",
                          registry=r)
        self.learning_rate = Gauge("facetrain_learning_rate", "Current learning rate", registry=r)
        self.epoch = Gauge("facetrain_epoch", "The reader's current epoch", registry=r)
        self.task_stat = Gauge("facetrain_task_stat", "Statistics the task reports, at the last log line (mean over "
                               "its window and the ranks; mining: active_triplets, d_ap, d_an, hardest_d_an)",
                               ["stat"], registry=r)
        self.nonfinite = Counter("facetrain_nonfinite_losses_skipped", "Micro-steps skipped on every rank "
                                 "because some rank's loss was not finite", registry=r)
        self.corrupt = Counter("facetrain_reader_corrupt_samples", "Undecodable samples the reader skipped",
                               registry=r)
        self.truncated = Counter("facetrain_reader_truncated_shards", "Shards that ended early (truncated tar)",
                                 registry=r)
        self.truncated_samples = Counter("facetrain_reader_truncated_samples", "Samples that shards which ended "
                                         "early held after that point", registry=r)
        self.missing_samples = Gauge("facetrain_reader_missing_samples", "Samples of the training split left out "
                                     "because their shards are missing or incomplete", registry=r)
        self.checkpoint_seconds = Gauge("facetrain_last_checkpoint_duration_seconds",
                                        "How long the last checkpoint took to write", registry=r)
        self.checkpoint_time = Gauge("facetrain_last_checkpoint_timestamp_seconds",
                                     "Unix time the last checkpoint was complete", registry=r)
        self.last_step_time = Gauge("facetrain_last_step_timestamp_seconds",
                                    "Unix time of the last optimizer step (stall alerts)", registry=r)
        if cuda:
            self.gpu_allocated = Gauge("facetrain_gpu_memory_allocated_bytes", "CUDA memory held by tensors",
                                       registry=r)
            self.gpu_reserved = Gauge("facetrain_gpu_memory_reserved_bytes", "CUDA memory reserved by the "
                                      "caching allocator", registry=r)
        self.eval_metric = Gauge("facetrain_eval_metric", "Metrics of the last evaluation", ["metric"], registry=r)
        self.eval_step = Gauge("facetrain_last_eval_step", "Step of the last evaluation", registry=r)
        self._pending_seconds = self._pending_wait = 0.0
        self._reader_seen: dict[str, int] = {}

    def started(self, task: str, world_size: int, step: int, target_steps: int) -> None:
        self.info.info({"task": task, "world_size": str(world_size)})
        self.step.set(step)
        self.target_steps.set(target_steps)

    def micro_step(self, samples: int, seconds: float, wait: float) -> None:
        self.samples.inc(samples)
        self._pending_seconds += seconds
        self._pending_wait += wait

    def logged(self, means: dict[str, float]) -> None:
        """The loop's log line: loss and task statistics, reduced over the window and the ranks."""
        self.loss.set(means["loss"])
        for name, value in means.items():
            if name not in ("loss", "samples_per_second"):
                self.task_stat.labels(name).set(value)

    def optimizer_step(self, step: int, learning_rate: float, stream: BatchStream, device: torch.device) -> None:
        self.steps.inc()
        self.step.set(step)
        self.step_seconds.observe(self._pending_seconds)
        self.data_wait.observe(self._pending_wait)
        self._pending_seconds = self._pending_wait = 0.0
        self.learning_rate.set(learning_rate)
        self.last_step_time.set(time.time())
        self.epoch.set(stream.epoch)
        self._count_reader_events(stream.stats())
        if device.type == "cuda":
            self.gpu_allocated.set(torch.cuda.memory_allocated(device))
            self.gpu_reserved.set(torch.cuda.memory_reserved(device))

    def _count_reader_events(self, stats: dict[str, float]) -> None:
        self.missing_samples.set(stats.get("missing_samples", 0))
        for key, counter in (("corrupt", self.corrupt), ("truncated_shards", self.truncated),
                             ("truncated_samples", self.truncated_samples)):
            total = stats.get(key, 0)
            if total > self._reader_seen.get(key, 0):
                counter.inc(total - self._reader_seen.get(key, 0))
            self._reader_seen[key] = total

    def skipped_nonfinite(self) -> None:
        self.nonfinite.inc()

    def checkpoint_saved(self, seconds: float) -> None:
        self.checkpoint_seconds.set(seconds)
        self.checkpoint_time.set(time.time())

    def evaluated(self, step: int, metrics: dict[str, float]) -> None:
        self.eval_step.set(step)
        for name, value in metrics.items():
            self.eval_metric.labels(name).set(value)
