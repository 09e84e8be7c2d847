"""A build's split: the split of every item (by ratios, stratified, the source's folds, or named
groups), and the manifest's ``split_method`` record of how it was made.  A group (identity,
patient) in two splits is refused unless ``--allow-group-leak``: a leak inflates every metric."""

from __future__ import annotations

from typing import Any

from shards.items import SourceItem
from shards.named_splits import assign_named
from shards.options import BuildOptions, SplitMethod
from shards.plan import assign_folds, assign_splits, groups_in_several, stratified_on


def group_kind(items: list[SourceItem]) -> str:
    """What a group is in this data set, for messages and the manifest."""
    if all("patient" in i.meta for i in items):
        return "patient"
    if all(i.label == i.group for i in items):
        return "identity"
    return "image" if len({i.group for i in items}) == len(items) else "group"


def split_items(options: BuildOptions, method: SplitMethod, items: list[SourceItem],
                label_order: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """key -> split, and the manifest's ``split_method``: how the split was made, and a check
    that no group is in two splits (a ValueError naming them, unless --allow-group-leak)."""
    kind = group_kind(items)
    if method.name == "folds":
        split_of = assign_folds(items, method.test_fold, method.val_fold)
    elif method.name == "named":
        split_of = assign_named({i.key: i.group for i in items}, method.named, kind)
    else:
        split_of = assign_splits(items, method.ratios, options.seed, label_order=label_order,
                                 stratify=method.name == "stratified")
    record: dict[str, Any] = {"method": method.name, "group": kind,
                              "seed": options.seed if method.ratios else None}
    if method.ratios:
        record["ratios"] = method.ratios
    if method.name == "stratified":
        record["stratified_on"] = stratified_on(label_order)
    if method.name == "named":
        record.update(rest=method.named.rest, named={split: {"names": len(names), **method.named.lists.get(split, {})}
                                                     for split, names in method.named.names.items()})
    if method.name == "folds":
        record.update(test_fold=method.test_fold, val_fold=method.val_fold,
                      folds=sorted({i.meta["fold"] for i in items}))
        # A group over several folds leaks in a cross-validation even where this build's folds keep it whole.
        record["in_several_folds"] = groups_in_several(items, {i.key: i.meta["fold"] for i in items})
    leaks = groups_in_several(items, split_of)
    if leaks and not options.allow_group_leak:
        named = ", ".join(f"{g} ({'+'.join(s)})" for g, s in list(leaks.items())[:10])
        more = f" and {len(leaks) - 10} more" if len(leaks) > 10 else ""
        cause = "the source's folds put them there" if method.name == "folds" else f"the {method.name} split"
        raise ValueError(f"{len(leaks)} {kind}(s) in more than one split ({cause}): {named}{more}; "
                         "--allow-group-leak builds anyway and names them in the manifest")
    record.update(allow_group_leak=options.allow_group_leak, leaks=leaks)
    return split_of, record
