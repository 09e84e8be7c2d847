"""From scanned items to shards: splits by group, identity-contiguous order, shard sizes."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from shards.items import SourceItem


@dataclass(frozen=True)
class ShardPlan:
    name: str
    split: str
    items: tuple[SourceItem, ...]


def assign_splits(items: list[SourceItem], ratios: dict[str, float] | None, seed: int, *,
                  stratify: bool = False, label_order: list[str] | None = None) -> dict[str, str]:
    """key -> split. Whole groups go to one split, so no identity or patient is in two.

    Ratios are fractions of groups: split s gets ``quotas(ratios, groups)[s]`` groups, with or
    without ``stratify``.  Plain: the groups in a seeded shuffle, cut in ratio order.
    Stratified: see ``stratified_order``; ``label_order`` is the manifest's label table.
    """
    if ratios is None:
        return {i.key: i.meta.get("official_split", "train") for i in items}
    if stratify:
        groups = stratified_order(items, ratios, seed, label_order or sorted({i.label for i in items}))
        split_of_group = deal(groups, quotas(ratios, len(groups)))
    else:
        groups = sorted({i.group for i in items})
        random.Random(seed).shuffle(groups)
        split_of_group, start = {}, 0
        for name, count in quotas(ratios, len(groups)).items():
            split_of_group.update((g, name) for g in groups[start:start + count])
            start += count
    return {i.key: split_of_group[i.group] for i in items}


def quotas(ratios: dict[str, float], num_groups: int) -> dict[str, int]:
    """Groups per split: round(ratio x groups) in the order given; the last split takes the rest."""
    counts, left = {}, num_groups
    for index, name in enumerate(ratios):
        counts[name] = left if index == len(ratios) - 1 else min(left, round(ratios[name] * num_groups))
        left -= counts[name]
    return counts


def stratified_order(items: list[SourceItem], ratios: dict[str, float], seed: int,
                     label_order: list[str]) -> list[str]:
    """The groups in the order ``deal`` hands them out, so that similar groups are spread over
    the splits in proportion to the ratios (stratified sampling of groups).

    Each group gets a stratum key (``stratified_on`` says which):
    - two classes (IDC: a patient has patches of both): the group's share of samples of the
      second class in ``label_order`` (the positive one); the groups sorted by it are cut into
      runs of ``ceil(1 / smallest ratio)`` neighbours, the fewest in which every split is due a
      group, and each run is a stratum;
    - more classes (tumour: a patient has one tumour type): the group's majority class (a tie
      goes to the class first in ``label_order``); each class is a stratum, the classes in a
      seeded order.
    The groups are shuffled with ``seed`` and stably sorted by key, and each run of the
    two-class case is shuffled again, so the seed decides which of similar groups goes where.
    """
    per_group: dict[str, Counter] = {}
    for item in items:
        per_group.setdefault(item.group, Counter())[item.label] += 1
    if all(i.label == i.group for i in items):
        raise ValueError("--stratify: each group is a class of its own (identities); there is nothing to stratify")
    rng = random.Random(seed)
    groups = sorted(per_group)
    rng.shuffle(groups)
    if len(label_order) == 2:
        positive = label_order[1]
        groups.sort(key=lambda g: per_group[g][positive] / sum(per_group[g].values()))
        run = math.ceil(1 / min(r for r in ratios.values() if r > 0))
        for start in range(0, len(groups), run):
            block = groups[start:start + run]
            rng.shuffle(block)
            groups[start:start + run] = block
        return groups
    rank = {label: index for index, label in enumerate(label_order)}
    strata = list(label_order)
    rng.shuffle(strata)  # so the split that a class's leftover group falls to varies with the seed
    position = {label: index for index, label in enumerate(strata)}
    groups.sort(key=lambda g: position[majority(per_group[g], rank)])
    return groups


def majority(counts: Counter, rank: dict[str, int]) -> str:
    """The most frequent label; a tie goes to the label first in the label table."""
    return min(counts, key=lambda label: (-counts[label], rank[label]))


def stratified_on(label_order: list[str]) -> str:
    """What ``stratified_order`` stratifies on, for the manifest."""
    if len(label_order) == 2:
        return f"share of {label_order[1]} samples in each group"
    return "majority class of each group"


def deal(groups: list[str], counts: dict[str, int]) -> dict[str, str]:
    """group -> split: each group in turn goes to the split furthest behind its share so far,
    counts[s] x (groups dealt) / (all groups) - (groups it has), ties to the split named first.

    Every split ends with exactly counts[s] groups (a split at or ahead of its share is never
    chosen while another is behind, and the shares sum to the groups dealt).  After any number
    of groups, each split holds its share of them to within one group, so a stratum (a run of
    similar groups) is divided in proportion to the counts to within two.
    """
    total = len(groups)
    have = dict.fromkeys(counts, 0)
    split_of_group = {}
    for dealt, group in enumerate(groups, 1):
        # scaled by ``total`` so that the comparison is exact in integers
        name = max(counts, key=lambda s: counts[s] * dealt - have[s] * total)
        split_of_group[group] = name
        have[name] += 1
    return split_of_group


def assign_folds(items: list[SourceItem], test_fold: int, val_fold: int | None) -> dict[str, str]:
    """key -> split from the fold the format recorded per sample: fold ``test_fold`` is 'test',
    ``val_fold`` 'val', the rest 'train'."""
    missing = [i for i in items if "fold" not in i.meta]
    if len(missing) == len(items):
        raise ValueError("--split folds: no sample records a fold (figshare-tumor reads them from SRC/cvind.mat)")
    if missing:
        raise ValueError(f"--split folds: {len(missing)} sample(s) have no fold, e.g. {missing[0].path}")
    folds = sorted({i.meta["fold"] for i in items})
    for flag, fold in (("--test-fold", test_fold), ("--val-fold", val_fold)):
        if fold is not None and fold not in folds:
            raise ValueError(f"{flag} {fold}: the folds recorded are {', '.join(map(str, folds))}")
    names = {test_fold: "test", val_fold: "val"}
    return {i.key: names.get(i.meta["fold"], "train") for i in items}


def groups_in_several(items: list[SourceItem], field_of: dict[str, object]) -> dict[str, list]:
    """group -> the sorted values of ``field_of[key]`` (a split, a fold) its items have, for the
    groups that have more than one."""
    seen: dict[str, set] = {}
    for item in items:
        seen.setdefault(item.group, set()).add(field_of[item.key])
    return {g: sorted(v) for g, v in sorted(seen.items()) if len(v) > 1}


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
