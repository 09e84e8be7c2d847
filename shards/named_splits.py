"""Splits by name: ``--split val=@heldout.txt,train=rest`` or ``--split "val=Aaron_Eckhart+Abel_Pacheco,train=rest"``.

A split takes the groups (identities, patients) named in a list file (``@FILE``: one name per
line, blank lines and ``#`` comments ignored), the names given on the command line (joined by
``+``), or ``rest``: every group no other split names.  Names match the groups exactly (no case
folding, no Unicode normalisation: ``José`` composed and decomposed are two identities); a name
with a ``+`` or ``,`` in it, or leading or trailing spaces, needs the list file.  What can be
checked without the data is checked in ``parse_named``, before the scan; ``assign_named`` checks
the names against the data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

LIST_FILE = "@"
SEPARATOR = "+"
REST = "rest"
SHOWN = 5
"""Unknown or clashing names an error message lists before it counts the others."""


@dataclass(frozen=True)
class NamedSplit:
    names: dict[str, tuple[str, ...]]
    """split -> the groups named for it, in the order given (``rest`` not included)."""
    rest: str | None = None
    """The split that takes every group not named."""
    lists: dict[str, dict[str, str]] = field(default_factory=dict)
    """split -> {"file", "sha256"} of its list file, for the manifest."""


def is_named(spec: str) -> bool:
    """Whether ``--split`` names groups rather than giving ratios: some value is ``rest``, a
    ``@FILE``, joins names with ``+`` or is not a number."""
    for part in spec.split(","):
        value = part.partition("=")[2].strip()
        if value == REST or value.startswith(LIST_FILE) or SEPARATOR in value:
            return True
        try:
            float(value)
        except ValueError:
            return bool(value)
    return False


def parse_named(spec: str) -> NamedSplit:
    """The named split ``spec`` asks for, list files read; ValueError (one line) for a file
    that is missing or names nothing, two ``rest``, a split or a name given twice."""
    names: dict[str, tuple[str, ...]] = {}
    lists, rests = {}, []
    for part in spec.split(","):
        split, sep, value = (text.strip() for text in part.partition("="))
        if not sep or not split or not value:
            raise ValueError(f"--split {spec!r}: expected SPLIT=@FILE, SPLIT=NAME+NAME... or SPLIT=rest")
        if split in names or split in rests:
            raise ValueError(f"--split {spec!r}: split {split!r} is given twice")
        if value == REST:
            rests.append(split)
            continue
        if value.startswith(LIST_FILE):
            path = Path(value[len(LIST_FILE):])
            listed, lists[split] = read_list(path)
        elif _is_ratio(value):
            raise ValueError(f"--split {spec!r}: {split}={value} is a ratio; ratios and names do not mix")
        else:
            listed = [name.strip() for name in value.split(SEPARATOR)]
            if not all(listed):
                raise ValueError(f"--split {spec!r}: an empty name in {split}={value} (names are joined by "
                                 f"{SEPARATOR!r})")
        names[split] = tuple(dict.fromkeys(listed))  # a name repeated in one list counts once
    if len(rests) > 1:
        raise ValueError(f"--split {spec!r}: only one split can take the rest, not {' and '.join(rests)}")
    split_of: dict[str, str] = {}
    clashes = []
    for split, listed in names.items():
        for name in listed:
            if split_of.setdefault(name, split) != split:
                clashes.append(f"{name!r} ({split_of[name]} and {split})")
    if clashes:
        raise ValueError(f"--split: {len(clashes)} name(s) given for two splits: {listing(clashes)}")
    return NamedSplit(names, rests[0] if rests else None, lists)


def _is_ratio(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return "." in value  # '0000045' is a CASIA identity, '0.5' no one's name


def read_list(path: Path) -> tuple[list[str], dict[str, str]]:
    """The names in a list file, and its path and sha256 for the manifest."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"--split list file {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--split list file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    names = [line.strip() for line in text.splitlines()]
    names = [name for name in names if name and not name.startswith("#")]
    if not names:
        raise ValueError(f"--split list file {path}: names nothing (only blank lines and # comments)")
    return names, {"file": str(path), "sha256": hashlib.sha256(data).hexdigest()}


def assign_named(groups: dict[str, str], named: NamedSplit, kind: str) -> dict[str, str]:
    """key -> split, from ``groups`` (key -> group).  A name that is no group of the data, or a
    group in no split when there is no ``rest``, is a ValueError: a misspelt name must not
    silently shrink a held-out set."""
    present = set(groups.values())
    unknown = [name for listed in named.names.values() for name in listed if name not in present]
    if unknown:
        raise ValueError(f"--split: {len(unknown)} name(s) are no {kind} of the data (names must match exactly): "
                         f"{listing([repr(n) for n in unknown])}")
    split_of_group = {name: split for split, listed in named.names.items() for name in listed}
    unnamed = sorted(present - set(split_of_group))
    if unnamed and named.rest is None:
        raise ValueError(f"--split: {len(unnamed)} {kind}(s) are in no split, e.g. {listing(unnamed)}; "
                         "add SPLIT=rest to put them somewhere")
    return {key: split_of_group.get(group, named.rest) for key, group in groups.items()}


def listing(entries: list[str]) -> str:
    """The first few entries, and how many more."""
    more = f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else ""
    return ", ".join(entries[:SHOWN]) + more
