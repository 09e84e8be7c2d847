"""LFW pairs (REFERENCE.md §6f): an image tree plus pairs.txt -> an evaluation set.

pairs.txt: a header ``<folds>\t<n>`` (or just ``<n>`` for pairsDevTrain/DevTest: one fold),
then per fold n matched lines ``Name i j`` and n mismatched lines ``Name1 i Name2 j``
(1-based image numbers).  The images are found in any format the build decodes (``.jpg`` as
published, ``.png``, ``.webp``, ...).  Every pair keeps its fold and its line, so dropping a
pair whose image is missing never shifts the fold boundaries of the others.  Until the build knows the
final sample keys (``unique_keys``) and which images were written, pairs name their images by
relative path.
"""

from __future__ import annotations

import os
from pathlib import Path

from shards.imaging import IMAGE_EXTENSIONS
from shards.items import ScanResult, Skip, SourceItem, make_key
from shards.options import BuildOptions

IMAGE_ROOTS = ("lfw", "lfw-deepfunneled", "lfw-funneled", "")  # the published names, else SRC


def image_root(src: Path) -> Path:
    for name in IMAGE_ROOTS:
        root = src / name
        if root.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
            return root
    raise FileNotFoundError(f"{src}: no LFW image tree (<Name>/<Name>_0001.jpg) found")


def parse_pairs(path: Path) -> list[dict]:
    """Pairs in file order: fold, same, the two (name, number), line. Raises on a broken layout."""
    lines = path.read_text().splitlines()
    header = lines[0].split()
    if len(header) not in (1, 2) or not all(h.isdigit() for h in header):
        raise ValueError(f"{path}:1: header must be '<folds> <pairs per fold>' or '<pairs>'")
    folds, per_fold = (1, int(header[0])) if len(header) == 1 else map(int, header)
    expected = folds * 2 * per_fold
    body = [(n, line.split()) for n, line in enumerate(lines[1:], 2) if line.strip()]
    if len(body) != expected:
        raise ValueError(f"{path}: {len(body)} pair lines, header promises {expected}")
    pairs = []
    for index, (number, fields) in enumerate(body):
        fold, position = divmod(index, 2 * per_fold)
        same = position < per_fold
        try:
            if same and len(fields) == 3:
                a, b = (fields[0], int(fields[1])), (fields[0], int(fields[2]))
            elif not same and len(fields) == 4:
                a, b = (fields[0], int(fields[1])), (fields[2], int(fields[3]))
            else:
                raise ValueError
        except ValueError:
            kind = "matched 'Name i j'" if same else "mismatched 'Name1 i Name2 j'"
            raise ValueError(f"{path}:{number}: expected a {kind} line, got {' '.join(fields)!r}") from None
        pairs.append({"fold": fold, "same": same, "a": a, "b": b, "line": number})
    return pairs


def scan_lfw_pairs(src: Path, options: BuildOptions) -> ScanResult:
    pairs_file = src / "pairs.txt"
    if not pairs_file.is_file():
        raise FileNotFoundError(f"{pairs_file}: missing")
    root = image_root(src)
    items: dict[str, SourceItem] = {}
    kept, skipped = [], []
    found: dict[str, dict[str, list[str]]] = {}  # person -> image stem -> its files
    for pair in parse_pairs(pairs_file):
        stems = [f"{name}/{name}_{number:04d}" for name, number in (pair["a"], pair["b"])]
        matches = [person_images(root, stem.split("/", 1)[0], found).get(stem, []) for stem in stems]
        sources = [files[0] for files in matches if len(files) == 1]
        for relative in (r for r in sources if r not in items):
            path, name = root / relative, relative.split("/", 1)[0]
            items[relative] = SourceItem(make_key(relative), str(path), name, name, path.stat().st_size,
                                         {"source": relative, "official_split": "test"})
        missing = [f"{stem}.*" for stem, files in zip(stems, matches, strict=True) if not files]
        ambiguous = [", ".join(files) for files in matches if len(files) > 1]
        if missing or ambiguous:
            reason = (f"names missing image(s): {', '.join(missing)}" if missing
                      else f"names an image saved in several formats: {'; '.join(ambiguous)}")
            skipped.append(Skip(f"{pairs_file}:{pair['line']}", f"pair (fold {pair['fold'] + 1}) {reason}"))
        else:
            kept.append({"fold": pair["fold"], "same": pair["same"], "a": sources[0], "b": sources[1],
                         "line": pair["line"]})
    return ScanResult(list(items.values()), skipped, extra={"pairs": kept})


def person_images(root: Path, name: str, found: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """``<name>/<stem>`` -> the relative paths of the person's image files with that stem
    (several if one image is saved in several formats), listed once per person."""
    if name not in found:
        folder = root / name
        files = sorted(os.listdir(folder)) if folder.is_dir() else []
        found[name] = {}
        for file in files:
            stem, suffix = os.path.splitext(file)
            if suffix.lower() in IMAGE_EXTENSIONS:
                found[name].setdefault(f"{name}/{stem}", []).append(f"{name}/{file}")
    return found[name]


def key_pairs(extra: dict, written: dict[str, str], pairs_file: str) -> list[Skip]:
    """After writing: each pair names its images by their final keys (``written``: relative
    path -> key of every image written); pairs with an image that was not written
    (undecodable, or cut by --limit) leave the set, each with a reason."""
    if "pairs" not in extra:
        return []
    kept, dropped = [], []
    for pair in extra["pairs"]:
        if pair["a"] in written and pair["b"] in written:
            kept.append({**pair, "a": written[pair["a"]], "b": written[pair["b"]]})
        else:
            dropped.append(pair)
    extra["pairs"] = kept
    return [Skip(f"{pairs_file}:{p['line']}", f"pair (fold {p['fold'] + 1}) has an image that was not written")
            for p in dropped]
