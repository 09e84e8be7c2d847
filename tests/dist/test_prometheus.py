"""A real Prometheus server scraping a live 2-process training job, and a real Pushgateway
receiving a finished job's final metrics (both on 127.0.0.1)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.parse

import yaml
from prometheus_client.parser import text_string_to_metric_families

from launcher.runtime.dist import free_port
from tests.dist.jobs import launch_command, results, run_job, wait_for, write_job
from tests.dist.prometheus_servers import REPO, http_get, require, start_server, stop

MONITORING = REPO / "configs" / "monitoring"


def query(prometheus: str, expr: str) -> list[dict]:
    reply = json.loads(http_get(f"{prometheus}/api/v1/query?query={urllib.parse.quote(expr)}"))
    assert reply["status"] == "success", (expr, reply)
    return reply["data"]["result"]


def by_rank(series: list[dict]) -> dict[str, float]:
    return {s["metric"]["rank"]: float(s["value"][1]) for s in series}


def shipped_expressions() -> list[str]:
    """Every PromQL expression of the shipped dashboard and alert rules."""
    dashboard = json.loads((MONITORING / "grafana_dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return exprs + [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def prometheus_config(tmp_path, targets_dir) -> None:
    """The shipped config, pointed at this test's targets folder and scraping every second."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["scrape_configs"][0]["file_sd_configs"] = [{"files": [f"{targets_dir}/*.json"], "refresh_interval": "1s"}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "alerts.yml").write_text((MONITORING / "alerts.yml").read_text())


def test_prometheus_scrapes_both_ranks_of_a_live_job(face_shards, tmp_path, subprocess_env):
    tools = require("prometheus", "promtool")
    runs = tmp_path / "runs"
    runs.mkdir()
    config = write_job(runs, "live", face_shards, train={"steps": 5000, "log_every": 100}, metrics={"port": 0})
    prometheus_config(tmp_path, runs / "prometheus_targets")
    port = free_port()
    server = start_server([tools["prometheus"], f"--config.file={tmp_path / 'prometheus.yml'}",
                           f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                          f"http://127.0.0.1:{port}/-/ready", tmp_path / "prometheus.log")
    job = subprocess.Popen(launch_command(config), env=subprocess_env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    prometheus = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: len(query(prometheus, 'facetrain_samples_total{job="live"}')) == 2, timeout=180,
                 what="Prometheus to scrape both ranks")
        first = by_rank(query(prometheus, 'facetrain_samples_total{job="live"}'))
        assert set(first) == {"0", "1"}
        wait_for(lambda: all(v > first[r] for r, v in by_rank(query(
            prometheus, 'facetrain_samples_total{job="live"}')).items()), timeout=60, what="the totals to grow")
        for metric in ("facetrain_step_duration_seconds_count", "facetrain_data_wait_seconds_count",
                       "facetrain_loss", "facetrain_learning_rate", "process_resident_memory_bytes"):
            assert set(by_rank(query(prometheus, f'{metric}{{job="live"}}'))) == {"0", "1"}, metric
        targets = json.loads((runs / "prometheus_targets" / "live.json").read_text())
        assert {t["labels"]["node"] for t in targets} and len(targets) == 2

        # Every expression of the shipped dashboard and alert rules is valid PromQL on live data,
        # and the dashboard's first panel (throughput per rank) has a series per rank.
        time.sleep(2)
        for expr in shipped_expressions():
            query(prometheus, expr.replace("$job", "live"))
        throughput = query(prometheus, shipped_expressions()[0].replace("$job", "live"))
        assert {s["metric"]["rank"] for s in throughput} == {"0", "1"}
        assert all(float(s["value"][1]) > 0 for s in throughput)

        # The exposition itself passes promtool's lint.
        text = http_get(f"http://{targets[0]['targets'][0]}/metrics")
        lint = subprocess.run([tools["promtool"], "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    finally:
        job.send_signal(signal.SIGTERM)  # checkpoint and stop
        job.communicate(timeout=180)
        stop(server)
    assert job.returncode == 0
    assert not (runs / "prometheus_targets" / "live.json").exists()  # a stopped job leaves the targets


def test_final_metrics_reach_a_real_pushgateway(face_shards, tmp_path, subprocess_env):
    tools = require("prometheus-pushgateway")
    port = free_port()
    gateway = start_server([tools["prometheus-pushgateway"], f"--web.listen-address=127.0.0.1:{port}"],
                           f"http://127.0.0.1:{port}/-/ready", tmp_path / "pushgateway.log")
    try:
        config = write_job(tmp_path, "job", face_shards, train={"steps": 12, "eval_at_start": False},
                           metrics={"port": 0, "pushgateway": f"http://127.0.0.1:{port}", "job_name": "pushed"})
        proc = run_job(config, subprocess_env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert results(config)["steps"] == 12
        pushed = text_string_to_metric_families(http_get(f"http://127.0.0.1:{port}/metrics"))
        samples = [s for family in pushed for s in family.samples if s.labels.get("job") == "pushed"]
    finally:
        stop(gateway)
    steps = {s.labels["rank"]: s.value for s in samples if s.name == "facetrain_step"}
    assert steps == {"0": 12.0, "1": 12.0}
    evaluated = {(s.labels["rank"], s.labels["metric"]) for s in samples if s.name == "facetrain_eval_metric"}
    assert ("0", "verification_auc") in evaluated and ("1", "verification_auc") in evaluated
    assert all(re.fullmatch(r"[\w.-]+", s.labels["node"]) for s in samples)
