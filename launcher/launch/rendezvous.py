"""Early check that a node can reach the rendezvous host, before torchrun starts.

Left to itself, a torchrun agent whose rendezvous host is wrong or down waits out its
timeouts and then ends in a long traceback about TCPStore. This waits for the endpoint for
a bounded time and then says which host and port could not be reached.
"""

from __future__ import annotations

import socket
import time

import psutil

from launcher.errors import JobError


class RendezvousUnreachable(JobError):
    """No connection to the rendezvous endpoint within the timeout."""


def is_this_host(host: str) -> bool:
    """True if ``host`` names this machine: the agent here will host the rendezvous store."""
    if host in {"localhost", socket.gethostname(), socket.getfqdn()}:
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    local = {address.address.split("%")[0] for nic in psutil.net_if_addrs().values() for address in nic}
    return bool(addresses & local) or any(a.startswith("127.") or a == "::1" for a in addresses)


def wait_for_endpoint(host: str, port: int, timeout_s: float, poll_s: float = 1.0) -> None:
    """Return once a TCP connection to host:port succeeds; raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, max(0.1, timeout_s))):
                return
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
        if time.monotonic() + poll_s > deadline:
            raise RendezvousUnreachable(
                f"rendezvous endpoint {host}:{port} unreachable after {timeout_s:g} s ({reason}). "
                f"Is the first node's launch running, is {host} the right host, and is port {port} open "
                "between the nodes? (cluster.rdzv_timeout_s sets how long to wait)")
        time.sleep(poll_s)
