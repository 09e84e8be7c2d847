"""``shards verify`` (re-hash, re-count, decode) and ``shards stats`` (what a folder holds).

verify's problems (FAIL: damaged, missing or undecodable data) make it exit 1; images that are
merely worth a look (a side under --min-size, constant, saturated) are warnings (WARN), listed
and counted, exit 0.
"""

from __future__ import annotations

import json
import random
import statistics
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shards.geometry import describe_geometry
from shards.imaging import SampleError, decode, describe, tally_pixels
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


def check_sample(key: str, fields: dict[str, bytes]) -> str | None:
    image_fields = [f for f in IMAGE_FIELDS if f in fields]
    missing = [f for f in ("cls", "json") if f not in fields]
    if not image_fields or missing:
        return f"sample {key}: missing fields {missing or list(IMAGE_FIELDS)}"
    try:
        int(fields["cls"])
        json.loads(fields["json"])
    except ValueError as exc:
        return f"sample {key}: bad cls/json ({exc})"
    return None


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    decoded: dict[str, list[dict[str, int]]] = field(default_factory=dict)
    """split -> the decoded images' ``pixels``."""

    def lines(self, out: Path) -> list[str]:
        lines = [f"{split}: {describe_pixels(tally_pixels(seen))}" for split, seen in sorted(self.decoded.items())]
        lines += [f"WARN {w}" for w in self.warnings] + [f"FAIL {p}" for p in self.problems]
        counts = [f"{len(self.problems)} problem(s)"] if self.problems else ["OK"]
        counts += [f"{len(self.warnings)} warning(s)"] if self.warnings else []
        return [*lines, f"{out}: {', '.join(counts)}"]


def verify(out: Path, sample: int | None = None, seed: int = 0, min_size: int = 2) -> Report:
    """What is wrong (``problems``: empty when all is good) and worth a look (``warnings``) in a
    shard folder.  ``sample`` decodes only that many random samples."""
    manifest = load_manifest(out)
    report = Report()
    problems = report.problems
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
            if issue := check_sample(key, fields):
                problems.append(f"{path}: {issue}")
            elif to_decode is None or (shard["name"], index) in to_decode:
                check_image(report, f"{path}: sample {key}", fields, shard["split"], min_size)
    listed = {s["name"] for s in manifest["shards"]}
    problems += [f"{p}: tar file not in the manifest" for p in sorted(Path(out).glob("*.tar"))
                 if p.name not in listed]
    return report


def check_image(report: Report, where: str, fields: dict[str, bytes], split: str, min_size: int) -> None:
    """Decode the sample's image as the build does and describe it into the report."""
    name = next(f for f in IMAGE_FIELDS if f in fields)
    try:
        seen = describe(decode(fields[name]), min_size)
    except SampleError as exc:
        report.problems.append(f"{where}: undecodable {name} ({exc})")
        return
    report.decoded.setdefault(split, []).append(seen["pixels"])
    report.warnings += [f"{where}: {reason}" for reason in seen.get("flags", ())]


def describe_pixels(kinds: list[dict[str, int]]) -> str:
    """One line for a tally of ``tally_pixels``: '8 images 16-bit 1-channel, intensities 0..3999'."""
    return "; ".join(f"{k['samples']} images {k['bit_depth']}-bit {k['channels']}-channel, "
                     f"intensities {k['min']}..{k['max']}" for k in kinds) or "no images"


def stats(out: Path) -> str:
    """A readable summary of a shard folder."""
    manifest = load_manifest(out)
    lines = [f"{out}: {manifest['dataset_format']}, {len(manifest['shards'])} shards, "
             f"{sum(s['bytes'] for s in manifest['shards']) / 1e6:.1f} MB"]
    if "split_method" in manifest:  # manifests from before split methods were recorded have none
        lines.append(describe_split(manifest["split_method"]))
    lines.append(f"{'split':<10} {'shards':>7} {'samples':>9} {'groups':>7}")
    for name, split in manifest["splits"].items():
        lines.append(f"{name:<10} {len(split['shards']):>7} {split['samples']:>9} {split['groups']:>7}")
    if len(manifest["labels"]) <= MAX_CLASSES_LISTED:
        lines += [f"classes {name}: " + ", ".join(f"{label} {split['labels'].get(label, 0)} ({share:.1%})"
                                                  for label, share in class_shares(split, manifest["labels"]))
                  for name, split in manifest["splits"].items()]
    tallies = {name: split["pixels"] for name, split in manifest["splits"].items()
               if "pixels" in split}  # manifests from before bit depths were recorded have none
    lines += [f"pixels {name}: {describe_pixels(kinds)}" for name, kinds in tallies.items()]
    if any(k["bit_depth"] == 16 for kinds in tallies.values() for k in kinds):
        implied = manifest.get("intensity")
        lines.append("16-bit images: the reader maps them to 8 bits by AugmentConfig.intensity"
                     + (f"; this format implies {implied!r}" if implied else ""))
    counts = [v["count"] for v in manifest["labels"].values()]
    lines.append(f"labels: {len(counts)}; samples per label min {min(counts)}, "
                 f"median {statistics.median(counts):g}, max {max(counts)}")
    lines += _reasons("skipped", manifest["skipped"]) + _reasons("flagged", manifest["flagged"])
    if manifest.get("geometry"):  # manifests from before the face geometry was recorded have none
        lines.append(describe_geometry(manifest["geometry"]))
    if "alignment" in manifest:
        lines.append("alignment: " + ", ".join(f"{k} {v}" for k, v in manifest["alignment"].items()))
    if "pairs" in manifest:
        folds = Counter(p["fold"] for p in manifest["pairs"])
        made = manifest.get("pairs_method")
        lines.append(f"pairs: {len(manifest['pairs'])} in {len(folds)} folds" + (
            f" ({made['spec']} seed {made['seed']}, identities "
            + ("disjoint across folds)" if made["identity_disjoint"] else "shared by folds)") if made else ""))
    if "duplicates" in manifest:  # manifests from before duplicate detection have none
        lines.append(describe_duplicates(manifest["duplicates"]))
    return "\n".join(lines)


def describe_duplicates(record: dict[str, Any]) -> str:
    """One line for the manifest's ``duplicates``."""
    if not record.get("checked", True):
        return f"duplicates: not checked ({record['why']})"
    near = f", {len(record['near'])} group(s) of near-duplicates" if record["near_distance"] is not None else ""
    return (f"duplicates: {len(record['exact'])} group(s) of identical files{near}; "
            f"{record['across_identities']} across identities, {record['across_splits']} across splits; "
            f"{record['dropped']} dropped")


MAX_CLASSES_LISTED = 10
"""``stats`` lists the class mix of each split for data sets with at most this many classes (the
medical ones); face sets have thousands of identities."""


def class_shares(split: dict[str, Any], labels: dict[str, Any]) -> list[tuple[str, float]]:
    """(label, share of the split's samples) in label-table order."""
    return [(label, split["labels"].get(label, 0) / max(split["samples"], 1)) for label in labels]


def describe_split(record: dict[str, Any]) -> str:
    """One line for the manifest's ``split_method``."""
    how = record["method"]
    if record.get("ratios"):
        how += " " + ",".join(f"{k}={v:g}" for k, v in record["ratios"].items()) + f" seed {record['seed']}"
    if record.get("stratified_on"):
        how += f" (on the {record['stratified_on']})"
    if record["method"] == "named":
        how += " " + ", ".join([f"{split}=" + (f"@{n['file']} ({n['names']} names)" if "file" in n
                                                else f"{n['names']} names") for split, n in record["named"].items()]
                               + ([f"{record['rest']}=rest"] if record["rest"] else []))
    if record["method"] == "folds":
        val = record["val_fold"]
        how += f" test={record['test_fold']}" + (f" val={val}" if val is not None else "")
    leaks = record.get("leaks", {})
    leak = f"; {len(leaks)} {record['group']}(s) in two splits (allowed)" if leaks else ""
    return f"split: {how}, by {record['group']}{leak}"


def _reasons(title: str, entries: list[dict[str, Any]]) -> list[str]:
    reasons = Counter(e["reason"] for e in entries)
    return [f"{title}: {len(entries)}"] + [f"  {n:>6}  {r}" for r, n in reasons.most_common(10)]
