"""``shards verify`` (re-hash, re-count, decode) and ``shards stats`` (what a folder holds)."""

from __future__ import annotations

import io
import json
import random
import statistics
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

from shards.items import IMAGE_FIELDS
from shards.manifest import load_manifest
from shards.writer import sha256_of


def read_samples(path: Path) -> tuple[dict[str, dict[str, bytes]], str | None]:
    """key -> {field: bytes}, and an error if the tar is truncated or malformed."""
    samples: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, field = member.name.partition(".")
                samples.setdefault(key, {})[field] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        return samples, f"unreadable tar after {len(samples)} samples ({exc})"
    return samples, None


def check_sample(key: str, fields: dict[str, bytes], decode_image: bool) -> str | None:
    image_fields = [f for f in IMAGE_FIELDS if f in fields]
    missing = [f for f in ("cls", "json") if f not in fields]
    if not image_fields or missing:
        return f"sample {key}: missing fields {missing or list(IMAGE_FIELDS)}"
    try:
        int(fields["cls"])
        json.loads(fields["json"])
    except ValueError as exc:
        return f"sample {key}: bad cls/json ({exc})"
    if decode_image:
        try:
            Image.open(io.BytesIO(fields[image_fields[0]])).load()
        except Exception as exc:
            return f"sample {key}: undecodable {image_fields[0]} ({exc})"
    return None


def verify(out: Path, sample: int | None = None, seed: int = 0) -> list[str]:
    """Problems found (empty: all good). ``sample`` decodes only that many random samples."""
    manifest = load_manifest(out)
    problems: list[str] = []
    to_decode = None
    if sample is not None:
        slots = [(s["name"], i) for s in manifest["shards"] for i in range(s["count"])]
        to_decode = set(random.Random(seed).sample(slots, min(sample, len(slots))))
    for shard in manifest["shards"]:
        path = Path(out) / shard["name"]
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        if path.stat().st_size != shard["bytes"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, manifest says {shard['bytes']}")
        elif sha256_of(path) != shard["sha256"]:
            problems.append(f"{path}: sha256 differs from the manifest (changed or corrupt)")
        samples, error = read_samples(path)
        if error:
            problems.append(f"{path}: {error}")
        if len(samples) != shard["count"]:
            problems.append(f"{path}: {len(samples)} samples, manifest says {shard['count']}")
        for index, (key, fields) in enumerate(samples.items()):
            decode = to_decode is None or (shard["name"], index) in to_decode
            if issue := check_sample(key, fields, decode):
                problems.append(f"{path}: {issue}")
    listed = {s["name"] for s in manifest["shards"]}
    problems += [f"{p}: tar file not in the manifest" for p in sorted(Path(out).glob("*.tar"))
                 if p.name not in listed]
    return problems


def stats(out: Path) -> str:
    """A readable summary of a shard folder."""
    manifest = load_manifest(out)
    lines = [f"{out}: {manifest['dataset_format']}, {len(manifest['shards'])} shards, "
             f"{sum(s['bytes'] for s in manifest['shards']) / 1e6:.1f} MB"]
    lines.append(f"{'split':<10} {'shards':>7} {'samples':>9} {'groups':>7}")
    for name, split in manifest["splits"].items():
        lines.append(f"{name:<10} {len(split['shards']):>7} {split['samples']:>9} {split['groups']:>7}")
    counts = [v["count"] for v in manifest["labels"].values()]
    lines.append(f"labels: {len(counts)}; samples per label min {min(counts)}, "
                 f"median {statistics.median(counts):g}, max {max(counts)}")
    lines += _reasons("skipped", manifest["skipped"]) + _reasons("flagged", manifest["flagged"])
    if "alignment" in manifest:
        lines.append("alignment: " + ", ".join(f"{k} {v}" for k, v in manifest["alignment"].items()))
    if "pairs" in manifest:
        folds = Counter(p["fold"] for p in manifest["pairs"])
        lines.append(f"pairs: {len(manifest['pairs'])} in {len(folds)} folds")
    return "\n".join(lines)


def _reasons(title: str, entries: list[dict[str, Any]]) -> list[str]:
    reasons = Counter(e["reason"] for e in entries)
    return [f"{title}: {len(entries)}"] + [f"  {n:>6}  {r}" for r, n in reasons.most_common(10)]
