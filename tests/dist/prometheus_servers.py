"""Real Prometheus and Pushgateway servers on loopback for the monitoring tests.

The binaries come from Debian's packages: on PATH, or unpacked into .tools/prometheus by
`make test` (tests/tools/fetch_prometheus.sh). Without them the tests skip, saying why.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNPACKED = REPO / ".tools" / "prometheus" / "usr" / "bin"


def binary(name: str) -> str | None:
    return shutil.which(name) or (str(UNPACKED / name) if (UNPACKED / name).is_file() else None)


def require(*names: str) -> dict[str, str]:
    found = {name: binary(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: install Debian's prometheus/prometheus-pushgateway "
                    "packages or run `make test`, which unpacks them into .tools/ (it could not here)")
    return found


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def start_server(command: list[str], ready_url: str, log: Path, timeout: float = 30) -> subprocess.Popen:
    """Start a server and wait until ``ready_url`` answers 200."""
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{command[0]} exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            http_get(ready_url, timeout=1)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"{command[0]} not ready after {timeout}s: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
