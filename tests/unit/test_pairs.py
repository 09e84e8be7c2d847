"""Pairs enumerated from labels (shards/pairs.py), checked against brute-force counts."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from shards.pairs import all_pairs, fold_pairs, identity_disjoint, matched_pairs, mismatched_sample

# 30 identities of 1..7 images, rows in a shuffled order (labels need not be contiguous)
SIZES = [1 + n % 7 for n in range(30)]
LABELS = np.random.default_rng(3).permutation(np.repeat([f"id{n:02d}" for n in range(30)], SIZES))


def check_valid(labels, a, b, same, fold) -> None:
    """Every pair real, consistent, and distinct."""
    assert a.dtype == b.dtype == fold.dtype == np.int64 and same.dtype == bool
    assert np.all(a < b)  # no self-pair, one orientation
    assert np.array_equal(labels[a] == labels[b], same)
    assert len({(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)}) == len(a)  # no pair twice


def test_all_pairs_lists_every_matched_pair_and_as_many_mismatched():
    a, b, same, fold = all_pairs(LABELS, seed=0)
    check_valid(LABELS, a, b, same, fold)
    matched = sum(comb(n, 2) for n in SIZES)
    assert same.sum() == matched == (~same).sum()
    brute = {(i, j) for i in range(len(LABELS)) for j in range(i + 1, len(LABELS)) if LABELS[i] == LABELS[j]}
    assert set(zip(a[same].tolist(), b[same].tolist(), strict=True)) == brute
    assert np.bincount(fold[same]).max() - np.bincount(fold[same]).min() <= 1
    assert np.bincount(fold[~same]).max() - np.bincount(fold[~same]).min() <= 1 and len(np.unique(fold)) == 10


def test_pairs_are_in_pairs_txt_order_and_deterministic_in_the_seed():
    a, b, same, fold = all_pairs(LABELS, seed=5)
    assert np.all(np.diff(fold) >= 0)
    for f in range(10):
        assert not np.any(np.diff(same[fold == f].astype(int)) > 0)  # matched before mismatched
    again = all_pairs(LABELS, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip((a, b, same, fold), again, strict=True))
    other = all_pairs(LABELS, seed=6)
    assert not np.array_equal(b[~same], other[1][~other[2]])


def test_mismatched_sample_is_uniform_over_all_mismatched_pairs():
    labels = np.array([0, 0, 1, 1, 1, 2])  # 11 mismatched pairs
    seen = np.zeros((6, 6), int)
    for seed in range(2000):
        a, b = mismatched_sample(labels, 3, np.random.default_rng(seed), "test")
        assert len(set(zip(a.tolist(), b.tolist(), strict=True))) == 3 and np.all(labels[a] != labels[b])
        np.add.at(seen, (a, b), 1)
    counts = seen[seen > 0]
    assert len(counts) == 11 and counts.min() > 0.85 * 2000 * 3 / 11 and counts.max() < 1.15 * 2000 * 3 / 11


def test_fold_pairs_fill_every_fold_with_disjoint_identities():
    a, b, same, fold = fold_pairs(LABELS, folds=3, per_fold=20, seed=1)
    check_valid(LABELS, a, b, same, fold)
    assert np.bincount(fold).tolist() == [20, 20, 20] and np.bincount(fold[same]).tolist() == [10, 10, 10]
    assert identity_disjoint(LABELS, a, b, fold)
    for f in range(3):  # each fold's identities appear in no other fold
        inside = set(LABELS[np.r_[a[fold == f], b[fold == f]]])
        outside = set(LABELS[np.r_[a[fold != f], b[fold != f]]])
        assert not inside & outside


def test_fold_pairs_share_identities_only_when_folds_cannot_be_disjoint():
    # 225 matched pairs in all; 10 folds of 22 cannot be dealt by whole identities, 10 of 20 can
    a, b, same, fold = fold_pairs(LABELS, folds=10, per_fold=44, seed=1)
    check_valid(LABELS, a, b, same, fold)
    assert np.bincount(fold[same]).tolist() == [22] * 10 and not identity_disjoint(LABELS, a, b, fold)
    a, b, _, fold = fold_pairs(LABELS, folds=10, per_fold=40, seed=1)
    assert identity_disjoint(LABELS, a, b, fold)


def test_too_few_pairs_is_one_clear_line():
    matched = sum(comb(n, 2) for n in SIZES)
    with pytest.raises(ValueError, match=rf"^10x600: 3000 matched pairs asked, the labels have {matched}$"):
        fold_pairs(LABELS, folds=10, per_fold=600)
    few = np.array(["x"] * 5 + ["y"])  # 10 matched pairs, 5 mismatched
    with pytest.raises(ValueError, match=r"^all pairs: 10 mismatched pairs asked, the labels have 5$"):
        all_pairs(few, folds=2)
    with pytest.raises(ValueError, match="even"):
        fold_pairs(LABELS, folds=2, per_fold=7)


def test_matched_pairs_of_singletons_only_is_empty():
    a, b = matched_pairs(np.array(["a", "b", "c"]))
    assert len(a) == len(b) == 0
