"""From scanned items to shards: splits by group, identity-contiguous order, shard sizes."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from shards.items import SourceItem


@dataclass(frozen=True)
class ShardPlan:
    name: str
    split: str
    items: tuple[SourceItem, ...]


def assign_splits(items: list[SourceItem], ratios: dict[str, float] | None, seed: int) -> dict[str, str]:
    """key -> split. Whole groups go to one split, so no identity or patient is in two."""
    if ratios is None:
        return {i.key: i.meta.get("official_split", "train") for i in items}
    groups = sorted({i.group for i in items})
    random.Random(seed).shuffle(groups)
    split_of_group, start = {}, 0
    names = list(ratios)
    for index, name in enumerate(names):
        end = len(groups) if index == len(names) - 1 else start + round(ratios[name] * len(groups))
        split_of_group.update((g, name) for g in groups[start:end])
        start = end
    return {i.key: split_of_group[i.group] for i in items}


def plan_shards(items: list[SourceItem], split_of: dict[str, str], maxcount: int,
                maxsize: int) -> list[ShardPlan]:
    """Shards per split, items ordered by (label, key) so identities are contiguous."""
    plans = []
    for split in sorted(set(split_of.values())):
        ordered = sorted((i for i in items if split_of[i.key] == split), key=lambda i: (i.label, i.key))
        chunks: list[list[SourceItem]] = []
        size = 0
        for item in ordered:
            if not chunks or len(chunks[-1]) >= maxcount or size + item.size > maxsize:
                chunks.append([])
                size = 0
            chunks[-1].append(item)
            size += item.size
        plans += [ShardPlan(f"{split}-{n:06d}.tar", split, tuple(c)) for n, c in enumerate(chunks)]
    return plans


def single_image_groups(items: list[SourceItem]) -> list[str]:
    counts = Counter(i.group for i in items)
    return sorted(g for g, n in counts.items() if n == 1)
