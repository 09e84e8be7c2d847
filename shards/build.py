"""``shards build``: a dataset's published layout -> WebDataset tar shards + manifest.json.

Resumable: the plan (which item goes into which shard) is a pure function of the input and
the options, so a re-run writes the same shard names; shards whose recorded sha256 still
matches are kept.  A killed build leaves ``*.partial`` files and no manifest.json, so
nothing looks complete that is not.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import multiprocessing
from collections import Counter
from typing import Any

from tqdm import tqdm

from shards.duplicates import find_duplicates, hash_items
from shards.files import write_json_atomic
from shards.formats import FORMATS
from shards.formats.lfw import key_pairs
from shards.geometry import manifest_geometry
from shards.imaging import tally_pixels
from shards.items import ScanResult, Skip, SourceItem, unique_keys
from shards.manifest import FORMAT_VERSION, MANIFEST
from shards.options import BuildOptions, parse_pairs, split_method
from shards.plan import ShardPlan, plan_shards, single_image_groups
from shards.split_pairs import planned_pairs, written_pairs
from shards.splitting import split_items
from shards.writer import RESULT_FIELDS, one_thread_per_worker, sha256_of, work_dir, write_shard


class BuildError(Exception):
    """The build cannot proceed; the message says what to do."""


def scan(options: BuildOptions) -> ScanResult:
    if options.format not in FORMATS:
        raise BuildError(f"unknown format {options.format!r}; known: {', '.join(sorted(FORMATS))}")
    fmt = FORMATS[options.format]
    if options.align != "none" and not fmt.faces:
        raise BuildError(f"--align is for face formats; {options.format} is not one")
    kind = "file" if fmt.source_is_file else "folder"
    if not (options.src.is_file() if fmt.source_is_file else options.src.is_dir()):
        raise BuildError(f"{options.src}: " + (f"not a {kind}: {options.format} reads one" if options.src.exists()
                                               else f"source {kind} does not exist"))
    try:
        result = fmt.scan(options.src, options)
    except (OSError, ValueError, KeyError) as exc:
        raise BuildError(f"{options.src}: cannot read as {options.format}: {exc}") from None
    result.items = unique_keys(result.items, options.src)
    if options.limit is not None:
        result.items = result.items[: options.limit]
    if not result.items:
        reasons = Counter(s.reason for s in result.skipped).most_common(3)
        raise BuildError(f"{options.src}: no usable {options.format} samples found"
                         + (f" (skipped: {reasons})" if reasons else ""))
    return result


def label_table(items: list[SourceItem], order: tuple[str, ...] | None) -> dict[str, int]:
    present = {i.label for i in items}
    names = [n for n in order if n in present] if order else sorted(present)
    return {name: index for index, name in enumerate(names)}


def fingerprint(options: BuildOptions, plans: list[ShardPlan]) -> str:
    content = {
        "options": options.fingerprint_fields(),
        "plan": [[p.name, [[i.key, i.path, i.size] for i in p.items]] for p in plans],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def prepare_output(options: BuildOptions, print_: str) -> None:
    """Claim OUT for this plan; refuse an OUT that holds a different build."""
    work = work_dir(options.out)
    work.mkdir(parents=True, exist_ok=True)
    marker = work / "fingerprint"
    if marker.is_file() and marker.read_text() != print_:
        raise BuildError(f"{options.out}: holds a build of other input or options; "
                         "use a new output folder or delete this one")
    marker.write_text(print_)
    (options.out / MANIFEST).unlink(missing_ok=True)  # rewritten at the end
    for leftover in options.out.glob("*.partial"):
        leftover.unlink()


def completed(plan: ShardPlan, options: BuildOptions) -> dict[str, Any] | None:
    """The recorded result of a shard finished by an earlier run, if the file still matches and
    the record has what this code records (a shard of an older build lacks the per-sample json
    and the tallies added since: it is written again)."""
    record, shard = work_dir(options.out) / f"{plan.name}.json", options.out / plan.name
    if not (record.is_file() and shard.is_file()):
        return None
    result = json.loads(record.read_text())
    if not result.keys() >= RESULT_FIELDS:
        return None
    if shard.stat().st_size != result["bytes"] or sha256_of(shard) != result["sha256"]:
        return None
    return result


def build(options: BuildOptions, command: str) -> dict[str, Any]:
    try:  # before the scan, which can take minutes
        method = split_method(options)
        pair_spec = parse_pairs(options.pairs)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    fmt = FORMATS.get(options.format)
    if fmt and pair_spec and not fmt.faces:
        raise BuildError(f"--pairs is for face formats; {options.format} is not one")
    if fmt and options.duplicates == "drop" and fmt.source_bytes is None:
        raise BuildError(f"--duplicates drop: {options.format} repeats an image for every pair it is in, by design")
    scanned = scan(options)
    label_ids = label_table(scanned.items, fmt.label_order)
    try:
        split_of, split_record = split_items(options, method, scanned.items, list(label_ids))
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    duplicates, dropped = check_duplicates(options, scanned.items, split_of)
    scanned.items = [i for i in scanned.items if i.key not in dropped]  # before planning: a resumed build plans alike
    scanned.skipped += dropped.values()
    pairs, pairs_record = [], {}
    if pair_spec:
        if "pairs" in scanned.extra:
            raise BuildError(f"--pairs: {options.format} builds carry their own pairs")
        try:
            pairs, pairs_record = planned_pairs(pair_spec, scanned.items, split_of, options.seed)
        except ValueError as exc:
            raise BuildError(str(exc)) from None
    plans = plan_shards(scanned.items, split_of, options.maxcount, options.maxsize)
    build_print = fingerprint(options, plans)
    prepare_output(options, build_print)

    results, todo = [], []
    for plan in plans:
        done = completed(plan, options)
        if done:
            results.append(done)
        else:
            todo.append(plan)
    writer = functools.partial(write_shard, options=options, label_ids=label_ids)
    planned = {p.name: len(p.items) for p in todo}
    with tqdm(total=sum(planned.values()), unit="img", desc="shards build") as bar:
        for result in _run(writer, todo, options.workers, threads_limited=options.align != "none"):
            results.append(result)
            bar.update(planned[result["name"]])

    failed = {s["path"] for r in results for s in r["skipped"]}
    written = {i.meta["source"]: i.key for i in scanned.items if i.path not in failed}
    scanned.skipped += key_pairs(scanned.extra, written, str(options.src / "pairs.txt"))
    if pair_spec:
        scanned.extra.update(written_pairs(pairs, pairs_record, set(written.values())))
    scanned.extra["duplicates"] = duplicates
    flagged = list(scanned.flagged)
    if fmt.faces:
        flagged += [Skip(g, "identity has a single image: no positive pair") for g in
                    single_image_groups(scanned.items)]
    manifest = assemble_manifest(options, command, build_print, scanned, plans, results, label_ids,
                                 flagged, reused=len(plans) - len(todo), intensity=fmt.intensity,
                                 template=fmt.template, split_record=split_record)
    write_json_atomic(options.out / MANIFEST, manifest)
    return manifest


HASH_CHUNK = 256
"""Items per task of the hashing pass."""


def check_duplicates(options: BuildOptions, items: list[SourceItem],
                     split_of: dict[str, str]) -> tuple[dict[str, Any], dict[str, Skip]]:
    """The manifest's ``duplicates`` and the items ``--duplicates drop`` leaves out (key -> why);
    the hashing runs on ``--workers`` processes (shards/duplicates.py says why it is a pass of its own)."""
    if FORMATS[options.format].source_bytes is None:
        return {"checked": False, "why": f"{options.format} repeats an image for every pair it is in"}, {}
    hasher = functools.partial(hash_items, options=options)
    chunks = [items[start:start + HASH_CHUNK] for start in range(0, len(items), HASH_CHUNK)]
    hashes = {}
    # no bar off a terminal: a --pairs error after this pass stays the one line on stderr
    with tqdm(total=len(items), unit="img", desc="duplicates", disable=None) as bar:
        for hashed in _run(hasher, chunks, options.workers, threads_limited=False):
            hashes.update((key, (digest, near)) for key, digest, near in hashed)
            bar.update(len(hashed))
    return find_duplicates(items, hashes, split_of, options)


def _run(writer, plans: list[ShardPlan], workers: int, threads_limited: bool):
    if workers <= 1 or len(plans) <= 1:
        yield from map(writer, plans)
        return
    # spawn, not fork: the parent may hold torch threads (MTCNN) that fork would break.
    initializer = one_thread_per_worker if threads_limited else None
    with multiprocessing.get_context("spawn").Pool(workers, initializer=initializer) as pool:
        yield from pool.imap_unordered(writer, plans)


def assemble_manifest(options, command, build_print, scanned, plans, results, label_ids, flagged,
                      reused, intensity, template, split_record) -> dict[str, Any]:
    by_name = {r["name"]: r for r in results}
    ordered = [by_name[p.name] for p in plans]
    label_counts = Counter()
    for result in ordered:
        label_counts.update(result["labels"])
    groups_per_split: dict[str, set] = {}
    for plan in plans:
        groups_per_split.setdefault(plan.split, set()).update(i.group for i in plan.items)
    splits = {}
    for split, groups in sorted(groups_per_split.items()):
        in_split = [r for r in ordered if r["split"] == split]
        split_labels = Counter()
        for result in in_split:
            split_labels.update(result["labels"])
        samples = sum(r["count"] for r in in_split)
        splits[split] = {
            "shards": [r["name"] for r in in_split],
            "samples": samples,
            "groups": len(groups),
            "labels": dict(sorted(split_labels.items())),
            "class_ratio": {name: round(split_labels[name] / samples, 4) for name in label_ids
                            if split_labels[name]} if samples else {},
            "pixels": tally_pixels(kind for r in in_split for kind in r["pixels"]),
        }
        if split_record["group"] == "patient":  # a few hundred ids that results can cite
            splits[split]["patients"] = sorted(groups)
    skipped = [vars(s) for s in scanned.skipped] + [s for r in ordered for s in r["skipped"]]
    manifest = {
        "format_version": FORMAT_VERSION,
        "dataset_format": options.format,
        "command": command,
        "options": options.fingerprint_fields(),
        "fingerprint": build_print,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "shards": [{k: r[k] for k in ("name", "split", "count", "bytes", "sha256")} for r in ordered],
        "labels": {name: {"id": i, "count": label_counts.get(name, 0)} for name, i in label_ids.items()},
        "split_method": split_record,
        "splits": splits,
        "skipped": skipped,
        "flagged": [vars(f) for f in flagged] + [f for r in ordered for f in r["flagged"]],
        "intensity": intensity,
        "geometry": manifest_geometry([r.get("sides") for r in ordered],
                                      options.template if options.align != "none" else template, options.size),
        "shards_reused": reused,
    }
    if options.align != "none":
        manifest["alignment"] = {
            "template": options.template,
            "aligned": sum(r["aligned"] for r in ordered),
            "not_found_kept_centre_crop": sum(r["unaligned_kept"] for r in ordered),
            "not_found_skipped": sum(s["reason"] == "no face found by MTCNN" for s in skipped),
        }
    return {**manifest, **scanned.extra}

