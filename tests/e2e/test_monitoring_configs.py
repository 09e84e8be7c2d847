"""The shipped Prometheus config, alert rules and Grafana dashboard: promtool checks them, the
alert rules' own unit tests pass, and every metric they use is one the exporter serves."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from launcher.monitoring.metrics import JobMetrics
from tests.dist.prometheus_servers import REPO, require

MONITORING = REPO / "configs" / "monitoring"


def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = require("promtool")["promtool"]
    return subprocess.run([tool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_scrape_config():
    check = promtool("check", "config", "prometheus.yml")
    assert check.returncode == 0, check.stdout + check.stderr


def test_promtool_accepts_the_alert_rules_and_their_unit_tests_pass():
    check = promtool("check", "rules", "alerts.yml")
    assert check.returncode == 0, check.stdout + check.stderr
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def served_metric_names() -> set[str]:
    names = set()
    for family in JobMetrics(cuda=True).registry.collect():
        names |= {sample.name for sample in family.samples} | {family.name}
    return names | {f"facetrain_{kind}_{suffix}" for kind in ("step_duration_seconds", "data_wait_seconds")
                    for suffix in ("bucket", "sum", "count")}


def test_dashboard_and_rules_use_only_metrics_the_exporter_serves():
    dashboard = json.loads((MONITORING / "grafana_dashboard.json").read_text())
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\b((?:facetrain|process)_\w+)", expr)}
    assert used - served_metric_names() == set()
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("throughput per rank", "step time", "waiting for data", "loss", "mining", "memory"):
        assert topic in titles, topic
