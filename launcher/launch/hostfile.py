"""DeepSpeed hostfiles (``worker-0 slots=8`` per line), checked before anything starts.

The deepspeed launcher itself warns and falls back to this host alone when the hostfile is
missing, and raises a bare ``ValueError`` for an ``--include`` naming an unknown host; here
both are errors that name the file and the entry.
"""

from __future__ import annotations

import re
from pathlib import Path

from launcher.config.loader import ConfigError

LINE = re.compile(r"^(\S+)\s+slots=(\d+)\s*$")


def read_hostfile(path: str | Path) -> dict[str, int]:
    """``{host: slots}`` in file order."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"hostfile {path}: cannot read it ({exc.strerror})") from None
    hosts: dict[str, int] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = LINE.match(line)
        if not match:
            raise ConfigError(f"hostfile {path}:{number}: expected 'HOST slots=N', got {raw.strip()!r}")
        host, slots = match.group(1), int(match.group(2))
        if host in hosts:
            raise ConfigError(f"hostfile {path}:{number}: host {host!r} is listed twice")
        if slots < 1:
            raise ConfigError(f"hostfile {path}:{number}: host {host!r} has no slots")
        hosts[host] = slots
    if not hosts:
        raise ConfigError(f"hostfile {path}: no 'HOST slots=N' entries")
    return hosts


def parse_filter(spec: str, option: str) -> dict[str, list[int]]:
    """``"a@b:0,2"`` -> ``{"a": [], "b": [0, 2]}`` (empty list: every slot)."""
    selected: dict[str, list[int]] = {}
    for part in filter(None, spec.split("@")):
        host, _, slots = part.partition(":")
        try:
            selected.setdefault(host, []).extend(int(s) for s in slots.split(",") if s)
        except ValueError:
            raise ConfigError(f"{option} {spec!r}: slots of {host!r} must be integers") from None
    return selected


def active_slots(hosts: dict[str, int], include: str, exclude: str, path: str) -> dict[str, list[int]]:
    """The slots the job will use, after ``include``/``exclude``; every named host and slot must exist."""
    if include and exclude:
        raise ConfigError("cluster: include and exclude cannot both be given (the deepspeed launcher refuses it)")
    spec, option = (include, "include") if include else (exclude, "exclude")
    named = parse_filter(spec, option)
    for host, slots in named.items():
        if host not in hosts:
            raise ConfigError(f"{option}: host {host!r} is not in hostfile {path} (it lists {', '.join(hosts)})")
        missing = [s for s in slots if not 0 <= s < hosts[host]]
        if missing:
            raise ConfigError(f"{option}: host {host!r} has slots 0..{hosts[host] - 1} in hostfile {path}, "
                              f"not {missing}")
    everything = {host: list(range(n)) for host, n in hosts.items()}
    if include:
        active = {host: slots or everything[host] for host, slots in named.items()}
    else:
        active = {host: [s for s in all_slots if not (host in named and (not named[host] or s in named[host]))]
                  for host, all_slots in everything.items()}
    active = {host: sorted(set(slots)) for host, slots in active.items() if slots}
    if not active:
        raise ConfigError(f"cluster: {option} {spec!r} leaves no slots of hostfile {path}")
    return active
