"""The per-rank metrics and their exporter, in one process (the live scrape by a real
Prometheus is tests/dist/test_prometheus.py)."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request

import psutil
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from launcher.config.schema import MetricsConfig
from launcher.monitoring.exporter import Exporter
from launcher.monitoring.metrics import JobMetrics
from launcher.run_dir import RunDir
from launcher.runtime.dist import DistInfo, free_port

ONE_PROCESS = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def values(metrics: JobMetrics) -> dict[tuple, float]:
    from prometheus_client import generate_latest

    families = text_string_to_metric_families(generate_latest(metrics.registry).decode())
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


class Stream:
    epoch = 3

    def __init__(self):
        self.counts = {"corrupt": 0, "truncated_shards": 0, "truncated_samples": 0, "missing_samples": 7}

    def stats(self):
        return dict(self.counts)


def test_steps_samples_times_and_reader_counters():
    metrics, stream = JobMetrics(cuda=False), Stream()
    metrics.started("face_triplet", 2, step=10, target_steps=100)
    metrics.micro_step(32, seconds=0.2, wait=0.05)
    metrics.micro_step(32, seconds=0.3, wait=0.01)  # accumulation
    stream.counts["corrupt"] = 2
    metrics.optimizer_step(11, learning_rate=1e-3, stream=stream, device=torch.device("cpu"))
    stream.counts.update(corrupt=3, truncated_shards=1, truncated_samples=5)
    metrics.micro_step(32, seconds=0.1, wait=0.0)
    metrics.optimizer_step(12, learning_rate=2e-3, stream=stream, device=torch.device("cpu"))
    metrics.logged({"loss": 0.3, "active_triplets": 0.5, "samples_per_second": 640.0})
    got = values(metrics)
    assert got[("facetrain_samples_total", ())] == 96
    assert got[("facetrain_steps_total", ())] == 2 and got[("facetrain_step", ())] == 12
    assert got[("facetrain_step_duration_seconds_count", ())] == 2
    assert got[("facetrain_step_duration_seconds_sum", ())] == pytest.approx(0.6)  # 0.2 + 0.3, then 0.1
    assert got[("facetrain_step_duration_seconds_bucket", (("le", "0.5"),))] == 2
    assert got[("facetrain_data_wait_seconds_sum", ())] == pytest.approx(0.06)
    assert got[("facetrain_loss", ())] == 0.3 and got[("facetrain_learning_rate", ())] == 2e-3
    assert got[("facetrain_task_stat", (("stat", "active_triplets"),))] == 0.5
    assert ("facetrain_task_stat", (("stat", "samples_per_second"),)) not in got  # the job's, not a task stat
    assert got[("facetrain_reader_corrupt_samples_total", ())] == 3
    assert got[("facetrain_reader_truncated_shards_total", ())] == 1
    assert got[("facetrain_reader_truncated_samples_total", ())] == 5
    assert got[("facetrain_reader_missing_samples", ())] == 7
    assert got[("facetrain_epoch", ())] == 3 and got[("facetrain_target_steps", ())] == 100
    assert got[("facetrain_job_info", (("task", "face_triplet"), ("world_size", "2")))] == 1
    assert not any(name.startswith("facetrain_gpu") for name, _ in got)  # only when CUDA is present
    assert not any(name.endswith("_created") for name, _ in got)


def test_checkpoint_evaluation_and_nonfinite_metrics():
    metrics = JobMetrics(cuda=False)
    metrics.checkpoint_saved(1.5)
    metrics.evaluated(40, {"verification_accuracy": 0.97})
    metrics.skipped_nonfinite()
    got = values(metrics)
    assert got[("facetrain_last_checkpoint_duration_seconds", ())] == 1.5
    assert got[("facetrain_last_checkpoint_timestamp_seconds", ())] > 1.7e9
    assert got[("facetrain_eval_metric", (("metric", "verification_accuracy"),))] == 0.97
    assert got[("facetrain_last_eval_step", ())] == 40
    assert got[("facetrain_nonfinite_losses_skipped_total", ())] == 1


def test_exporter_serves_writes_targets_and_falls_back_from_a_busy_port(tmp_path, caplog):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        metrics = JobMetrics(cuda=False)
        metrics.samples.inc(5)
        with caplog.at_level(logging.WARNING):
            exporter = Exporter(MetricsConfig(port=taken), metrics, ONE_PROCESS, RunDir(tmp_path / "runs" / "faces"))
    try:
        assert exporter.port != taken and f"port {taken} on 127.0.0.1 is in use" in caplog.text
        with urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=5) as reply:
            assert "facetrain_samples_total 5.0" in reply.read().decode()
        targets = json.loads((tmp_path / "runs" / "prometheus_targets" / "faces.json").read_text())
        assert targets == [{"targets": [f"127.0.0.1:{exporter.port}"],
                            "labels": {"job": "faces", "rank": "0", "node": socket.gethostname()}}]
    finally:
        exporter.close(leave_targets=True)
    assert not (tmp_path / "runs" / "prometheus_targets" / "faces.json").exists()


def test_an_unreachable_pushgateway_is_a_warning_naming_it(tmp_path, caplog):
    port = free_port()  # nobody listens on it
    config = MetricsConfig(port=0, pushgateway=f"http://127.0.0.1:{port}", file_sd=str(tmp_path / "t.json"))
    exporter = Exporter(config, JobMetrics(cuda=False), ONE_PROCESS, RunDir(tmp_path / "run"))
    with caplog.at_level(logging.WARNING):
        exporter.close(leave_targets=False)
    assert f"could not push the final metrics to the Pushgateway at http://127.0.0.1:{port}" in caplog.text
    assert (tmp_path / "t.json").exists()  # a crashed run stays listed (its targets show as down)


def listening_addresses() -> dict[int, str]:
    """port -> address of this process's listening TCP sockets, as the kernel reports them."""
    return {c.laddr.port: c.laddr.ip for c in psutil.Process().net_connections("tcp") if c.status == "LISTEN"}


def test_the_endpoint_listens_on_loopback_only_unless_asked(tmp_path):
    exporter = Exporter(MetricsConfig(port=0), JobMetrics(cuda=False), ONE_PROCESS, RunDir(tmp_path / "run"))
    try:
        assert listening_addresses()[exporter.port] == "127.0.0.1"  # metrics are not for the whole network
    finally:
        exporter.close(leave_targets=True)
    exporter = Exporter(MetricsConfig(port=0, address="0.0.0.0"), JobMetrics(cuda=False), ONE_PROCESS,
                        RunDir(tmp_path / "run"))
    try:
        assert listening_addresses()[exporter.port] == "0.0.0.0"
        targets = json.loads((tmp_path / "prometheus_targets" / "run.json").read_text())
        assert targets[0]["targets"] == [f"{socket.gethostname()}:{exporter.port}"]  # reachable by name
    finally:
        exporter.close(leave_targets=True)


def test_each_local_rank_serves_on_the_base_port_plus_its_local_rank(tmp_path):
    base = next(p for p in iter(free_port, None) if port_is_free(p + 2))
    local_rank_2 = DistInfo(rank=5, world_size=8, local_rank=2, device=torch.device("cpu"))
    exporter = Exporter(MetricsConfig(port=base), JobMetrics(cuda=False), local_rank_2, RunDir(tmp_path / "run"))
    try:
        assert exporter.port == base + 2 and base + 2 in listening_addresses()
        with urllib.request.urlopen(f"http://127.0.0.1:{base + 2}/metrics", timeout=5) as reply:
            assert "facetrain_samples_total" in reply.read().decode()
    finally:
        exporter.close(leave_targets=True)


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
