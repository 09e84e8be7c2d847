"""Verification pairs enumerated from labels, drawn without replacement (REFERENCE.md §6f, §7.5).

Pure functions of ``labels``, one per row (a sample's position in whatever order the caller
holds them: a split's samples in shard order, the rows of an embedding matrix).  Each returns
``(a, b, same, fold)``: int64 row indices with ``a < b``, bool, int64, in the order of LFW's
pairs.txt (fold by fold, matched pairs before mismatched, then by rows).  No pair appears
twice and no row is paired with itself; the result is a pure function of (labels, arguments,
seed).  Asking for more pairs than the labels have is a ValueError of one line (how many were
asked, how many exist).

- ``all_pairs``: every matched pair, and as many mismatched pairs.
- ``fold_pairs``: LFW's View 2 shape, ``folds`` folds of ``per_fold`` pairs, half matched,
  with each identity in one fold only when the identities allow it.
"""

from __future__ import annotations

import numpy as np

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def all_pairs(labels, seed: int = 0, folds: int = 10) -> Pairs:
    """Every matched pair (two rows of one label), and as many mismatched pairs drawn without
    replacement from all mismatched pairs.  Matched and mismatched pairs are each dealt to
    ``folds`` folds in a seeded order (fold sizes differ by one at most), so the LFW protocol,
    which picks a threshold on the other folds, can score them."""
    labels = np.asarray(labels)
    a, b = matched_pairs(labels)
    if len(a) < folds:
        raise ValueError(f"all pairs: {len(a)} matched pair(s) in {len(labels)} rows, fewer than the {folds} folds")
    rng = np.random.default_rng(seed)
    c, d = mismatched_sample(labels, len(a), rng, "all pairs")
    fold = np.r_[rng.permutation(len(a)) % folds, rng.permutation(len(c)) % folds]
    return lfw_order(np.r_[a, c], np.r_[b, d], np.r_[np.ones(len(a), bool), np.zeros(len(c), bool)], fold)


def fold_pairs(labels, folds: int = 10, per_fold: int = 600, seed: int = 0) -> Pairs:
    """``folds`` folds of ``per_fold`` pairs, half matched and half mismatched, all distinct.

    As in LFW's View 2, the identities are dealt to the folds and each fold's pairs are drawn
    from its own identities, so no identity is in two folds.  The dealing is seeded and
    balanced (identities with the most matched pairs first, each to the fold with the fewest
    so far).  If some fold would still have too few matched or mismatched pairs, the pairs are
    drawn from all rows instead and the folds share identities (``identity_disjoint`` tells
    which happened).  Fewer pairs in all than asked for is a ValueError.
    """
    labels = np.asarray(labels)
    if per_fold < 2 or per_fold % 2:
        raise ValueError(f"{folds}x{per_fold}: pairs per fold must be even (half matched, half mismatched)")
    half = per_fold // 2
    rng = np.random.default_rng(seed)
    fold_of_row = deal_identities(labels, folds, half, rng)
    if fold_of_row is None:  # too few identities for disjoint folds: draw from all rows
        return _drawn(labels, np.arange(len(labels)), folds, half, rng)
    parts = [_drawn(labels[rows], rows, 1, half, rng) for rows in (np.flatnonzero(fold_of_row == f)
                                                                   for f in range(folds))]
    return lfw_order(*(np.concatenate([part[i] for part in parts]) for i in range(3)),
                     np.repeat(np.arange(folds), per_fold))


def _drawn(labels: np.ndarray, rows: np.ndarray, folds: int, half: int, rng: np.random.Generator) -> Pairs:
    """``folds`` x ``half`` matched and as many mismatched pairs of ``labels`` (the labels of
    ``rows``), as indices into ``rows``' row numbers, dealt to folds in a seeded order."""
    spec = f"{folds}x{2 * half}" if folds > 1 else f"a fold of {2 * half}"
    a, b = matched_pairs(labels)
    if len(a) < folds * half:
        raise ValueError(f"{spec}: {folds * half} matched pairs asked, the labels have {len(a)}")
    chosen = rng.choice(len(a), folds * half, replace=False)
    c, d = mismatched_sample(labels, folds * half, rng, spec)
    fold = np.r_[np.arange(folds * half) % folds, np.arange(folds * half) % folds]
    same = np.r_[np.ones(folds * half, bool), np.zeros(folds * half, bool)]
    return lfw_order(rows[np.r_[a[chosen], c]], rows[np.r_[b[chosen], d]], same, fold)


def matched_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (a, b) with a < b and labels[a] == labels[b], sorted by (label, a, b)."""
    order, starts, counts = _blocks(labels)
    firsts, seconds = [], []
    for start, count in zip(starts, counts, strict=True):
        if count > 1:
            i, j = np.triu_indices(count, 1)
            rows = order[start:start + count]  # ascending: the sort is stable
            firsts.append(rows[i])
            seconds.append(rows[j])
    empty = np.zeros(0, np.int64)
    return (np.concatenate(firsts), np.concatenate(seconds)) if firsts else (empty, empty)


def mismatched_sample(labels: np.ndarray, count: int, rng: np.random.Generator,
                      spec: str) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct pairs (a < b) of rows with different labels, drawn without replacement.

    Mismatched pairs are numbered without being listed (their number grows as rows squared):
    with the rows sorted by label, pair t has its first row in the label block p where t falls
    among the blocks' counts (block size x rows after the block) and its second in a later
    block, so a sample of numbers is a sample of pairs.
    """
    order, starts, counts = _blocks(labels)
    after = len(labels) - (starts + counts)
    per_block = counts * after
    ends = np.cumsum(per_block)
    total = int(ends[-1]) if len(ends) else 0
    if count > total:
        raise ValueError(f"{spec}: {count} mismatched pairs asked, the labels have {total}")
    picks = rng.choice(total, count, replace=False)
    block = np.searchsorted(ends, picks, side="right")
    within, later = np.divmod(picks - (ends - per_block)[block], after[block])
    first, second = order[starts[block] + within], order[starts[block] + counts[block] + later]
    return np.minimum(first, second), np.maximum(first, second)


def _blocks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by label (stably), and where each label's block starts and how long it is."""
    order = np.argsort(labels, kind="stable")
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    return order.astype(np.int64), starts.astype(np.int64), counts.astype(np.int64)


def deal_identities(labels: np.ndarray, folds: int, half: int, rng: np.random.Generator) -> np.ndarray | None:
    """The fold of each row, whole identities per fold, so that every fold has ``half``
    matched and ``half`` mismatched pairs at least; None if the dealing cannot give that.

    Identities with two or more images go first, most matched pairs first (a seeded shuffle
    breaks ties), each to the fold with the fewest matched pairs so far; single images go to
    the fold with the fewest images (they add mismatched pairs only).
    """
    names, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    shuffled = rng.permutation(len(names))
    ordered = shuffled[np.argsort(-counts[shuffled], kind="stable")]
    matched, images = np.zeros(folds, np.int64), np.zeros(folds, np.int64)
    fold_of_name = np.zeros(len(names), np.int64)
    for name in ordered:
        count = int(counts[name])
        fold = int(np.lexsort((images, matched))[0]) if count > 1 else int(np.argmin(images))
        fold_of_name[name] = fold
        matched[fold] += count * (count - 1) // 2
        images[fold] += count
    squares = np.bincount(fold_of_name, counts ** 2, minlength=folds)
    mismatched = (images ** 2 - squares) // 2
    if matched.min() < half or mismatched.min() < half:
        return None
    return fold_of_name[inverse]


def identity_disjoint(labels, a: np.ndarray, b: np.ndarray, fold: np.ndarray) -> bool:
    """Whether no label appears in the pairs of two folds."""
    _, ids = np.unique(np.asarray(labels), return_inverse=True)
    seen = np.unique(np.c_[np.r_[ids[a], ids[b]], np.r_[fold, fold]], axis=0)  # (label, fold) rows
    return len(np.unique(seen[:, 0])) == len(seen)


def lfw_order(a: np.ndarray, b: np.ndarray, same: np.ndarray, fold: np.ndarray) -> Pairs:
    """Pairs as pairs.txt lists them: by fold, matched before mismatched, then by rows."""
    order = np.lexsort((b, a, ~same, fold))
    return a[order].astype(np.int64), b[order].astype(np.int64), same[order], fold[order].astype(np.int64)
