"""What of a split is there to read, checked from its manifest and file sizes alone.

Torch-free and cheap (one stat per shard), so ``launch`` checks a job's data before it starts
any process, and the readers check it again where they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shards.manifest import load_manifest


class MissingData(ValueError):
    """More of a split is missing than the job allows."""


@dataclass
class SplitAvailability:
    root: Path
    split: str
    manifest: dict[str, Any]
    listed: list[dict[str, Any]]
    """The split's shards, as the manifest lists them."""
    problems: dict[str, str]
    """Shard name -> why it cannot be read whole."""

    @property
    def available(self) -> list[dict[str, Any]]:
        return [s for s in self.listed if s["name"] not in self.problems]

    @property
    def unavailable(self) -> list[str]:
        """Each shard left out, with its path and why."""
        return [f"{self.root / name} ({problem})" for name, problem in self.problems.items()]

    @property
    def missing_samples(self) -> int:
        return sum(s["count"] for s in self.listed if s["name"] in self.problems)

    @property
    def in_manifest(self) -> int:
        return sum(s["count"] for s in self.listed)

    def check(self, max_missing_fraction: float) -> None:
        """A MissingData error naming the files if more than the allowed share is missing."""
        if self.missing_samples > max_missing_fraction * self.in_manifest:
            raise MissingData(
                f"{self.root}: split {self.split!r} is missing {self.missing_samples} of {self.in_manifest} samples "
                f"({self.missing_samples / self.in_manifest:.1%}, more than the {max_missing_fraction:.1%} allowed "
                f"by max_missing_fraction) in {len(self.problems)} of {len(self.listed)} shards: "
                f"{'; '.join(self.unavailable)}")


def split_availability(root: str | Path, split: str) -> SplitAvailability:
    """The split of the shard folder ``root`` and which of its shards cannot be read whole;
    ManifestError / ValueError for a folder without a usable manifest or without the split."""
    root = Path(root)
    manifest = load_manifest(root)
    if split not in manifest["splits"]:
        raise ValueError(f"{root}: no split {split!r} (has {', '.join(manifest['splits'])})")
    listed = [s for s in manifest["shards"] if s["split"] == split]
    if not listed:
        raise ValueError(f"{root}: split {split!r} has no shards")
    problems = {s["name"]: problem for s in listed if (problem := shard_problem(root / s["name"], s))}
    return SplitAvailability(root, split, manifest, listed, problems)


def shard_problem(path: Path, listed: dict[str, Any]) -> str | None:
    """Why a shard the manifest lists cannot be read whole, if it cannot."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if size != listed["bytes"]:
        return f"{size} bytes, the manifest says {listed['bytes']}"
    return None


def check_enough_identities(label_counts: dict[Any, int], identities_per_batch: int, images_per_identity: int,
                            small_identities: str, where: str) -> None:
    """A P×K batch needs P identities with K images (1 when small identities are replaced)."""
    need = 1 if small_identities == "replace" else images_per_identity
    usable = sum(1 for n in label_counts.values() if n >= need)
    if usable < identities_per_batch:
        raise ValueError(f"{where}: only {usable} identities have >= {need} images; a batch needs "
                         f"{identities_per_batch}")
