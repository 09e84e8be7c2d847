"""``--pairs SPLIT=all|FOLDSxN``: verification pairs of one split, written into the manifest in
the layout of lfw-pairs builds (``{"a": key, "b": key, "same", "fold"}``), so the face task
scores them as it scores LFW's own."""

from __future__ import annotations

from typing import Any

import numpy as np

from shards.items import SourceItem
from shards.options import PairSpec
from shards.pairs import all_pairs, fold_pairs, identity_disjoint


def planned_pairs(spec: PairSpec, items: list[SourceItem], split_of: dict[str, str],
                  seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The split's pairs by key, and how they were made (the manifest's ``pairs_method``).
    Drawn before anything is written, so that too few pairs stops the build at once; rows are
    the split's samples in shard order.  ValueError (one line) if the split is absent or short."""
    rows = sorted((i for i in items if split_of[i.key] == spec.split), key=lambda i: (i.label, i.key))
    if not rows:
        raise ValueError(f"--pairs {spec}: no split {spec.split!r}; the splits are "
                         + ", ".join(sorted(set(split_of.values()))))
    labels = np.array([i.label for i in rows])
    try:
        a, b, same, fold = (all_pairs(labels, seed) if spec.folds is None
                            else fold_pairs(labels, spec.folds, spec.per_fold, seed))
    except ValueError as exc:
        raise ValueError(f"--pairs {spec.split}: {exc}") from None
    pairs = [{"fold": int(f), "same": bool(s), "a": rows[i].key, "b": rows[j].key}
             for i, j, s, f in zip(a, b, same, fold, strict=True)]
    record = {"split": spec.split, "spec": str(spec), "seed": seed, "folds": len(set(fold.tolist())),
              "matched": int(same.sum()), "mismatched": int((~same).sum()),
              "identity_disjoint": identity_disjoint(labels, a, b, fold)}
    return pairs, record


def written_pairs(pairs: list[dict[str, Any]], record: dict[str, Any], written: set[str]) -> dict[str, Any]:
    """The manifest's ``pairs`` and ``pairs_method`` once the shards are written: a pair with an
    image that was not written (undecodable) leaves, counted."""
    kept = [p for p in pairs if p["a"] in written and p["b"] in written]
    return {"pairs": kept, "pairs_method": {**record, "not_written": len(pairs) - len(kept)}}
