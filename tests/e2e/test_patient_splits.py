"""Patient-level splits of the medical sets through the real `shards build`: plain ratios,
stratified ratios, the dataset's own folds (figshare cvind.mat), the leak check, the manifest's
record of all of it, and `shards stats`."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from shards.build import label_table, scan
from shards.cli import main
from shards.formats import FORMATS
from shards.options import BuildOptions
from shards.plan import assign_splits, deal, quotas
from shards.verify import read_samples
from tests.fixtures import datasets

# 15 patients, imbalanced: 3 meningioma, 9 glioma, 3 pituitary; 3..6 slices each; folds 1..5,
# three patients each, patient-disjoint as the published cvind.mat is.
LABEL_OF = [1, 2, 2, 3, 2, 1, 2, 2, 3, 2, 1, 2, 3, 2, 2]
TUMOUR = [(f"P{n:02d}", label, [n % 5 + 1] * (3 + n % 4)) for n, label in enumerate(LABEL_OF)]
LEAKY = [(p, label, [2, 2, 3, 3] if p == "P01" else folds) for p, label, folds in TUMOUR]  # P01 in folds 2 and 3
# 20 IDC patients, (negative, positive) patches: most have no IDC, a few mostly IDC.
POSITIVE = [0, 0, 0, 1, 0, 2, 0, 0, 9, 0, 1, 0, 0, 6, 0, 0, 12, 0, 3, 0]
IDC = {str(8800 + n): (4 + n % 5, positive) for n, positive in enumerate(POSITIVE)}
RATIOS = "train=0.6,val=0.2,test=0.2"


@pytest.fixture(scope="module")
def tumour(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("tumour")
    datasets.make_figshare_patients(src, TUMOUR)
    return src


@pytest.fixture(scope="module")
def idc(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("idc")
    datasets.make_idc_patients(src, IDC)
    return src


def build(fmt: str, src: Path, out: Path, *options: str) -> dict:
    assert main(["build", fmt, str(src), str(out), *options]) == 0
    return json.loads((out / "manifest.json").read_text())


def rows(out: Path, manifest: dict) -> list[dict]:
    """Every written sample's json."""
    found = []
    for shard in manifest["shards"]:
        content, error = read_samples(out / shard["name"])
        assert error is None
        found += [json.loads(fields["json"]) for fields in content.values()]
    return found


def splits_of_patient(samples: list[dict]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for sample in samples:
        seen.setdefault(sample["patient"], set()).add(sample["split"])
    return seen


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("stratify", [False, True])
@pytest.mark.parametrize("fmt", ["figshare-tumor", "idc"])
def test_ratio_splits_keep_every_patient_whole_and_the_manifest_says_how(fmt, stratify, tumour, idc, tmp_path):
    src = tumour if fmt == "figshare-tumor" else idc
    manifest = build(fmt, src, tmp_path / "out", "--split", RATIOS, "--seed", "3", *["--stratify"] * stratify)
    samples = rows(tmp_path / "out", manifest)
    seen = splits_of_patient(samples)
    assert all(len(s) == 1 for s in seen.values())
    record = manifest["split_method"]
    assert record["method"] == ("stratified" if stratify else "ratios") and record["seed"] == 3
    assert record["group"] == "patient" and record["leaks"] == {} and record["allow_group_leak"] is False
    assert record["ratios"] == {"train": 0.6, "val": 0.2, "test": 0.2}
    assert ("stratified_on" in record) == stratify
    num_patients = len(seen)
    for name, split in manifest["splits"].items():
        in_split = [s for s in samples if s["split"] == name]
        patients = sorted({s["patient"] for s in in_split})
        assert split["patients"] == patients and split["groups"] == len(patients)
        assert split["groups"] == quotas({"train": 0.6, "val": 0.2, "test": 0.2}, num_patients)[name]
        counts = Counter(s["label"] for s in in_split)
        assert split["labels"] == dict(sorted(counts.items()))
        assert split["class_ratio"] == {k: round(counts[k] / len(in_split), 4) for k in manifest["labels"]
                                        if counts[k]}


def class_mix_distance(split_of: dict[str, str], items, labels: list[str]) -> float:
    """Largest total-variation distance between a split's class shares and the whole set's."""
    overall = Counter(i.label for i in items)
    worst = 0.0
    for split in set(split_of.values()):
        counts = Counter(i.label for i in items if split_of[i.key] == split)
        size = sum(counts.values())
        worst = max(worst, sum(abs(counts[k] / size - overall[k] / len(items)) for k in labels) / 2)
    return worst


@pytest.mark.parametrize("fmt", ["figshare-tumor", "idc"])
def test_stratified_class_mix_is_closer_to_the_whole_set_than_a_plain_group_split(fmt, tumour, idc, tmp_path):
    src = tumour if fmt == "figshare-tumor" else idc
    items = scan(BuildOptions(format=fmt, src=src, out=tmp_path)).items
    labels = list(label_table(items, FORMATS[fmt].label_order))
    ratios = {"train": 0.6, "val": 0.2, "test": 0.2}
    plain, stratified = [], []
    for seed in range(20):
        plain.append(class_mix_distance(assign_splits(items, ratios, seed), items, labels))
        split_of = assign_splits(items, ratios, seed, stratify=True, label_order=labels)
        stratified.append(class_mix_distance(split_of, items, labels))
    # measured (mean over seeds of the worst split): tumour 0.19 vs 0.39, IDC 0.11 vs 0.19
    assert np.mean(stratified) < 0.7 * np.mean(plain)
    assert max(stratified) < max(plain)


def test_the_split_is_a_function_of_the_seed(tumour, idc, tmp_path):
    first = build("idc", idc, tmp_path / "a", "--split", RATIOS, "--stratify", "--seed", "5")
    again = build("idc", idc, tmp_path / "b", "--split", RATIOS, "--stratify", "--seed", "5")
    assert first["shards"] == again["shards"] and first["splits"] == again["splits"]
    for fmt, src in (("idc", idc), ("figshare-tumor", tumour)):
        items = scan(BuildOptions(format=fmt, src=src, out=tmp_path)).items
        order = list(label_table(items, FORMATS[fmt].label_order))
        ratios = {"train": 0.6, "val": 0.2, "test": 0.2}
        seeded = [assign_splits(items, ratios, seed, stratify=True, label_order=order) for seed in range(4)]
        assert seeded[0] == assign_splits(items, ratios, 0, stratify=True, label_order=order)
        assert len({tuple(sorted(s.items())) for s in seeded}) == 4


def test_deal_gives_exact_counts_and_keeps_every_prefix_in_proportion():
    rng = random.Random(0)
    for _ in range(300):
        weights = [rng.random() + 0.01 for _ in range(rng.randint(2, 4))]
        ratios = {f"s{k}": w / sum(weights) for k, w in enumerate(weights)}
        groups = [str(n) for n in range(rng.randint(1, 120))]
        counts = quotas(ratios, len(groups))
        split_of = deal(groups, counts)
        have = Counter()
        for dealt, group in enumerate(groups, 1):
            have[split_of[group]] += 1
            assert all(abs(have[s] - counts[s] * dealt / len(groups)) < 1 for s in counts)
        assert have == +Counter(counts)


def cvind_of(src: Path) -> np.ndarray:
    with h5py.File(src / "cvind.mat", "r") as handle:
        return np.asarray(handle["cvind"]).ravel().astype(int)


@pytest.mark.parametrize("test_fold, val_fold", [(2, 5), (4, None)])
def test_folds_reproduce_cvind_exactly(test_fold, val_fold, tumour, tmp_path):
    extra = ["--val-fold", str(val_fold)] if val_fold else []
    manifest = build("figshare-tumor", tumour, tmp_path / "out", "--split", "folds", "--test-fold", str(test_fold),
                     *extra)
    cvind = cvind_of(tumour)
    samples = rows(tmp_path / "out", manifest)
    assert len(samples) == len(cvind)
    for sample in samples:
        fold = cvind[int(Path(sample["source"]).stem) - 1]
        assert sample["fold"] == fold
        assert sample["split"] == {test_fold: "test", val_fold: "val"}.get(fold, "train")
    assert all(len(s) == 1 for s in splits_of_patient(samples).values())
    record = manifest["split_method"]
    assert record["method"] == "folds" and record["folds"] == [1, 2, 3, 4, 5] and record["seed"] is None
    assert (record["test_fold"], record["val_fold"]) == (test_fold, val_fold)
    assert record["leaks"] == {} and record["in_several_folds"] == {}
    assert set(manifest["splits"]) == {"train", "test"} | ({"val"} if val_fold else set())


def test_folds_that_split_a_patient_are_an_error_naming_the_patient(tmp_path, capsys):
    src = tmp_path / "src"
    datasets.make_figshare_patients(src, LEAKY)
    err = one_line_error(capsys, ["build", "figshare-tumor", str(src), str(tmp_path / "out"), "--split", "folds",
                                  "--test-fold", "2"])
    assert "1 patient(s) in more than one split (the source's folds put them there): P01 (test+train)" in err
    assert "--allow-group-leak" in err and not (tmp_path / "out" / "manifest.json").exists()
    manifest = build("figshare-tumor", src, tmp_path / "allowed", "--split", "folds", "--test-fold", "2",
                     "--allow-group-leak")
    record = manifest["split_method"]
    assert record["allow_group_leak"] is True and record["leaks"] == {"P01": ["test", "train"]}
    assert record["in_several_folds"] == {"P01": [2, 3]}
    main(["stats", str(tmp_path / "allowed")])
    assert "1 patient(s) in two splits (allowed)" in capsys.readouterr().out
    # Fold 1 as test keeps P01 whole (folds 2 and 3 are both train): it builds, and says P01 spans folds.
    manifest = build("figshare-tumor", src, tmp_path / "fold1", "--split", "folds", "--test-fold", "1")
    assert manifest["split_method"]["leaks"] == {} and manifest["split_method"]["in_several_folds"] == {"P01": [2, 3]}


@pytest.mark.parametrize("fmt, options, message", [
    ("idc", ["--split", "folds", "--test-fold", "1"], "no sample records a fold"),
    ("figshare-tumor", ["--split", "folds", "--test-fold", "6"], "--test-fold 6: the folds recorded are 1, 2, 3, 4, 5"),
    ("figshare-tumor", ["--split", "folds", "--test-fold", "1", "--val-fold", "0"], "--val-fold 0: the folds recorded"),
    ("figshare-tumor", ["--split", "folds"], "--split folds needs --test-fold K"),
    ("figshare-tumor", ["--split", "folds", "--test-fold", "2", "--val-fold", "2"], "--val-fold 2 is also --test-fold"),
    ("figshare-tumor", ["--split", RATIOS, "--test-fold", "2"], "--test-fold is for --split folds"),
    ("figshare-tumor", ["--stratify"], "--stratify needs ratios"),
    ("figshare-tumor", ["--split", "folds", "--test-fold", "2", "--stratify"], "--stratify is for ratios"),
    ("figshare-tumor", ["--split", "fold"], "expected NAME=RATIO[,NAME=RATIO...] or folds"),
])
def test_bad_split_options_are_one_line_errors(fmt, options, message, tumour, idc, tmp_path, capsys):
    src = tumour if fmt == "figshare-tumor" else idc
    assert message in one_line_error(capsys, ["build", fmt, str(src), str(tmp_path / "out"), *options])


def test_folds_without_cvind_and_stratified_identities_are_one_line_errors(tmp_path, capsys):
    datasets.make_figshare_patients(tmp_path / "tumour", TUMOUR[:3])
    (tmp_path / "tumour" / "cvind.mat").unlink()
    err = one_line_error(capsys, ["build", "figshare-tumor", str(tmp_path / "tumour"), str(tmp_path / "o1"),
                                  "--split", "folds", "--test-fold", "1"])
    assert "reads them from SRC/cvind.mat" in err
    datasets.make_casia(tmp_path / "casia")
    err = one_line_error(capsys, ["build", "casia-webface", str(tmp_path / "casia"), str(tmp_path / "o2"),
                                  "--split", RATIOS, "--stratify"])
    assert "each group is a class of its own (identities)" in err


def test_idc_patient_comes_from_the_folder_and_file_name_and_stats_give_class_mix(tmp_path, capsys):
    src = tmp_path / "src"
    datasets.make_idc(src)
    some_patch = next((src / "8863" / "1").iterdir()).read_bytes()
    (src / "9036" / "1" / "8863_idx5_x1_y1_class1.png").write_bytes(some_patch)  # another patient's name
    manifest = build("idc", src, tmp_path / "out", "--split", "train=0.67,test=0.33", "--stratify")
    skipped = {Path(s["path"]).name: s["reason"] for s in manifest["skipped"]}
    assert skipped["8863_idx5_x1_y1_class1.png"] == "name says patient 8863 class 1, folder says 9036/1"
    samples = rows(tmp_path / "out", manifest)
    for sample in samples:
        folder, _, name = sample["source"].split("/")
        assert sample["patient"] == folder == name.split("_")[0] == sample["group"]
    assert {s["patient"] for s in samples} == {"8863", "9036", "10253"}
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "split: stratified train=0.67,test=0.33 seed 0 (on the share of idc_positive samples in each group)" in out
    for name, split in manifest["splits"].items():
        counts = split["labels"]
        total = split["samples"]
        negative, positive = counts.get("idc_negative", 0), counts.get("idc_positive", 0)
        assert (f"classes {name}: idc_negative {negative} ({negative / total:.1%}), "
                f"idc_positive {positive} ({positive / total:.1%})") in out
