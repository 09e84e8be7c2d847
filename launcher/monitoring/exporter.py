"""Serving one rank's metrics: an HTTP endpoint per rank, file-SD targets for Prometheus, and
an optional push of the final values to a Pushgateway.

One endpoint per rank (port = base + local rank) rather than prometheus-client's
multiprocess mode: that mode has no Pushgateway support and multiplies gauge series across
restarts (REFERENCE.md §10). Rank 0 gathers every rank's real host:port and writes them as a
file-SD target list, labelled job/rank/node, which the shipped Prometheus config watches.
"""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

import torch.distributed as torch_dist
from prometheus_client import push_to_gateway, start_http_server

from launcher.config.schema import MetricsConfig
from launcher.errors import JobError
from launcher.monitoring.metrics import JobMetrics
from launcher.run_dir import RunDir
from launcher.runtime.dist import DistInfo
from shards.files import write_json_atomic

log = logging.getLogger(__name__)


class Exporter:
    def __init__(self, config: MetricsConfig, metrics: JobMetrics, dist: DistInfo, run_dir: RunDir):
        self.config, self.metrics, self.dist = config, metrics, dist
        self.job_name = config.job_name or run_dir.name
        self.node = socket.gethostname()
        self.server, _ = self._serve()
        self.port = self.server.server_port
        self.file_sd = Path(config.file_sd) if config.file_sd else run_dir.prometheus_targets(self.job_name)
        self._write_targets()

    def _serve(self):
        wanted = self.config.port + self.dist.local_rank if self.config.port else 0
        try:
            return start_http_server(wanted, addr=self.config.address, registry=self.metrics.registry)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise JobError(f"metrics: cannot serve on {self.config.address}:{wanted} ({exc.strerror}); "
                               "check metrics.address") from None
            log.warning("metrics: port %d on %s is in use; serving on a free port instead (see the file-SD "
                        "targets)", wanted, self.config.address)
            return start_http_server(0, addr=self.config.address, registry=self.metrics.registry)

    def _target_host(self) -> str:
        return self.node if self.config.address in ("0.0.0.0", "::", "") else self.config.address

    def _write_targets(self) -> None:
        """Rank 0 writes every rank's endpoint (a collective: every rank calls it)."""
        mine = {"targets": [f"{self._target_host()}:{self.port}"],
                "labels": {"job": self.job_name, "rank": str(self.dist.rank), "node": self.node}}
        everyone = [mine]
        if torch_dist.is_initialized() and self.dist.world_size > 1:
            everyone = [None] * self.dist.world_size
            torch_dist.all_gather_object(everyone, mine)
        if self.dist.is_main:
            self.file_sd.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.file_sd, everyone)  # Prometheus never reads a half-written file
            log.info("metrics on %s (file-SD targets: %s)",
                     ", ".join(t["targets"][0] for t in everyone), self.file_sd)

    def close(self, leave_targets: bool) -> None:
        """Push the final values if asked; ``leave_targets`` removes this job from Prometheus's targets."""
        if self.config.pushgateway:
            try:
                push_to_gateway(self.config.pushgateway, job=self.job_name, registry=self.metrics.registry,
                                grouping_key={"rank": str(self.dist.rank), "node": self.node}, timeout=10)
            except OSError as exc:
                log.warning("metrics: could not push the final metrics to the Pushgateway at %s (%s)",
                            self.config.pushgateway, exc)
        if leave_targets and self.dist.is_main:
            self.file_sd.unlink(missing_ok=True)
        self.server.shutdown()
        self.server.server_close()


def start_exporter(config: MetricsConfig, metrics: JobMetrics, dist: DistInfo, run_dir: RunDir) -> Exporter | None:
    return Exporter(config, metrics, dist, run_dir) if config.enabled else None
