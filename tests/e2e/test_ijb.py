"""`shards build ijbb|ijbc` on insightface's IJB release layout (tests/fixtures/ijb.py), and the
template protocol (facetrain/ijb.py) against references written here."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve

from facetrain.ijb import (
    FAR_TARGETS,
    evaluate_ijb_folder,
    ijb_verification,
    pair_scores,
    tar_at_far,
    template_features,
)
from shards.cli import main
from tests.fixtures.ijb import (
    ARCFACE_112,
    BAD_PAIR_LINES,
    CORRUPT_TEMPLATE,
    MISSING_TEMPLATE,
    PROBE_TEMPLATE,
    UNLISTED_TEMPLATE,
    make_ijb,
)
from tests.fixtures.landmark_blobs import centroids
from tests.fixtures.shard_folders import build_and_verify, stored


def build(src: Path, out: Path, prefix: str) -> dict:
    return build_and_verify(prefix, src, out)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict, dict]:
    root = tmp_path_factory.mktemp("ijb")
    fixture = make_ijb(root / "IJBC")
    return root / "out", build(root / "IJBC", root / "out", "ijbc"), fixture


def test_build_aligns_by_landmarks_and_keeps_pairs_with_images(built):
    out, manifest, fixture = built
    samples = stored(out, manifest)
    written = {name: image for name, image in fixture["images"].items() if name != fixture["corrupt"]}
    assert {s["meta"]["source"] for s in samples.values()} == {f"loose_crop/{n}" for n in written}
    assert set(manifest["splits"]) == {"test"} and manifest["geometry"]["template"] == "arcface112"
    assert manifest["geometry"]["canvas"] == 112
    for sample in samples.values():
        template, media, score, _, landmarks = written[sample["meta"]["source"].split("/")[1]]
        assert (sample["meta"]["template"], sample["meta"]["media"], sample["meta"]["detector_score"]) == (
            template, media, score)
        if template == PROBE_TEMPLATE:  # the five blobs land on the template points
            aligned = np.asarray(Image.open(io.BytesIO(sample["jpg"])))
            assert aligned.shape == (112, 112, 3)
            found = centroids(aligned, ARCFACE_112)
            assert np.abs(found - ARCFACE_112).max() < 0.06  # half a pixel of convention slip: 0.14
            assert np.abs(np.array(sample["meta"]["landmarks"]) - landmarks).max() <= 0.005 + 1e-9  # kept to 0.01 px

    reasons = {(Path(s["path"]).name, s["reason"]) for s in manifest["skipped"]}
    assert sum(s["reason"] == "expected '<image> <template id> <media id>'" for s in manifest["skipped"]) == 2
    assert (fixture["missing"], "listed, not found in loose_crop/") in reasons
    assert any(n == fixture["corrupt"] and r.startswith("cannot decode image") for n, r in reasons)
    assert ("90.jpg", "no usable line in ijbc_name_5pts_score.txt") in reasons
    assert ("91.jpg", "no usable line in ijbc_name_5pts_score.txt") in reasons
    assert ("ijbc_name_5pts_score.txt", "96.jpg: in no template (ijbc_face_tid_mid.txt)") in reasons
    assert any(r == "1.jpg listed twice" for _, r in reasons)
    assert any(r == "the five landmarks coincide" for _, r in reasons)
    landmark_lines = [s for s in manifest["skipped"] if s["reason"].startswith("expected '<image> x1 y1")]
    assert len(landmark_lines) == 2  # 91 (ten numbers) and 95 (nan)
    pair_lines = [s for s in manifest["skipped"] if s["reason"] == "expected '<template id> <template id> <label 0/1>'"]
    assert len(pair_lines) == len(BAD_PAIR_LINES)
    for template in (MISSING_TEMPLATE, UNLISTED_TEMPLATE):
        dropped = sum(template in p[:2] for p in fixture["pairs"])
        assert ("ijbc_template_pair_label.txt",
                f"template {template} has no usable image: {dropped} pair(s) naming it dropped") in reasons

    kept = [p for p in fixture["pairs"] if MISSING_TEMPLATE not in p[:2] and UNLISTED_TEMPLATE not in p[:2]]
    record = manifest["ijb"]
    assert record | {"side_file": None, "side_file_sha256": None} == {
        "set": "IJB-C", "side_file": None, "side_file_sha256": None, "images": len(fixture["images"]),
        "templates": 9, "media": 14, "pairs": len(kept), "genuine_pairs": sum(p[2] for p in kept),
        "pairs_in_file": len(fixture["pairs"]) + len(BAD_PAIR_LINES),
        "pairs_dropped": len(fixture["pairs"]) - len(kept)}
    side_path = out / record["side_file"]
    assert hashlib.sha256(side_path.read_bytes()).hexdigest() == record["side_file_sha256"]
    with np.load(side_path) as side:
        assert side["pairs"].dtype == np.int32 and side["pairs"].tolist() == [list(p) for p in kept]
        table = {key.decode(): (int(t), int(m), float(s)) for key, t, m, s in
                 zip(side["keys"], side["template"], side["media"], side["detector_score"], strict=True)}
    assert set(samples) <= set(table) and len(table) == len(fixture["images"])
    for key, sample in samples.items():
        assert table[key] == (sample["meta"]["template"], sample["meta"]["media"], sample["meta"]["detector_score"])


def test_ijbb_names_and_limit(tmp_path):
    make_ijb(tmp_path / "IJBB", prefix="ijbb")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["build", "ijbb", str(tmp_path / "IJBB"), str(tmp_path / "out"), "--limit", "4"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["ijb"]["set"] == "IJB-B" and manifest["ijb"]["images"] == 4  # template 1's four images
    assert manifest["ijb"]["templates"] == 1 and manifest["ijb"]["pairs"] == 0


def reference_templates(embeddings, templates, media, scores, use_norm_score, use_detector_score) -> dict:
    """insightface's loops, in float64: per template, the mean of each medium's images, summed, normalised."""
    features = {}
    for template in sorted(set(templates.tolist())):
        total = 0
        for medium in sorted(set(media[templates == template].tolist())):
            rows = np.flatnonzero((templates == template) & (media == medium))
            images = [embeddings[r] * (scores[r] if use_detector_score else 1)
                      / (1 if use_norm_score else np.sqrt(embeddings[r] @ embeddings[r])) for r in rows]
            total = total + sum(images) / len(images)
        features[template] = total / np.sqrt(total @ total)
    return features


@pytest.mark.parametrize("use_norm_score", [True, False])
@pytest.mark.parametrize("use_detector_score", [True, False])
def test_pooling_matches_a_loop_over_templates(use_norm_score, use_detector_score):
    rng = np.random.default_rng(3)
    templates = rng.integers(1, 40, 600) * 7  # sparse ids
    media = rng.integers(0, 4, 600) + 1000 * (rng.random(600) < 0.3)  # a medium id shared across templates
    embeddings, scores = rng.normal(size=(600, 16)) * rng.uniform(0.2, 3, (600, 1)), rng.uniform(0.3, 1, 600)
    ids, features = template_features(embeddings, templates, media, scores, use_norm_score, use_detector_score)
    expected = reference_templates(embeddings, templates, media, scores, use_norm_score, use_detector_score)
    assert ids.tolist() == sorted(expected)
    np.testing.assert_allclose(features, np.array([expected[t] for t in ids.tolist()]), rtol=0, atol=1e-12)

    pairs = np.column_stack([rng.choice(ids, (500, 2)), rng.integers(0, 2, 500)])
    pairs[:3, 1] = 5  # no such template: dropped
    cosines, scored = pair_scores(ids, features, pairs[:, :2])
    assert scored.tolist() == [False] * 3 + [True] * 497
    np.testing.assert_allclose(cosines, [expected[a] @ expected[b] for a, b, _ in pairs[3:]], rtol=0, atol=1e-12)
    metrics = ijb_verification(embeddings, templates, media, scores, pairs, use_norm_score, use_detector_score)
    assert metrics["pairs"] == 497 and metrics["pairs_dropped"] == 3 and metrics["templates"] == len(ids)
    assert metrics["auc"] == pytest.approx(roc_auc_score(pairs[3:, 2], cosines), abs=1e-12)


def test_a_video_counts_once_in_its_template():
    e1, e2 = np.eye(2)
    embeddings = np.array([e1, e1, e1, e2, e1])  # template 1: three frames of medium 10, a photo; template 2: e1
    templates, media = np.array([1, 1, 1, 1, 2]), np.array([10, 10, 10, 11, 12])
    _, features = template_features(embeddings, templates, media, np.ones(5))
    assert features[0] @ features[1] == pytest.approx(1 / np.sqrt(2), abs=1e-15)  # not 3/sqrt(10): frames averaged
    _, features = template_features(embeddings, templates, np.arange(5), np.ones(5))  # five media
    assert features[0] @ features[1] == pytest.approx(3 / np.sqrt(10), abs=1e-15)


def test_tar_at_far_reads_the_exact_roc():
    rng = np.random.default_rng(5)
    genuine = np.r_[np.ones(3_000, bool), np.zeros(120_000, bool)]
    scores = np.round(rng.normal(genuine * 2.5, 1), 2)  # ties, within and across the two kinds
    metrics = tar_at_far(scores, genuine)
    assert metrics["auc"] == pytest.approx(roc_auc_score(genuine, scores), abs=1e-12)
    assert "tar_at_far_1e-6" not in metrics  # 120,000 mismatched pairs: one false accept is 8e-6
    fpr, tpr, _ = roc_curve(genuine, scores)
    # By hand: accept score >= t for every distinct t (and none above the largest).
    thresholds = np.r_[np.unique(scores), np.inf]
    far = 1 - np.searchsorted(np.sort(scores[~genuine]), thresholds) / (~genuine).sum()
    tar = 1 - np.searchsorted(np.sort(scores[genuine]), thresholds) / genuine.sum()
    for label, target in FAR_TARGETS.items():
        if target < 1e-5:
            continue
        best = tar[far <= target].max()
        assert metrics[f"tar_at_far_{label}"] == pytest.approx(best, abs=1e-15)
        assert metrics[f"far_achieved_{label}"] == pytest.approx(far[(far <= target) & (tar == best)].min(), abs=1e-15)
        assert best == pytest.approx(tpr[fpr <= target].max(), abs=1e-15)  # scikit-learn's curve agrees


def test_folder_evaluation_from_the_side_file(built):
    out, manifest, fixture = built
    keys = sorted(stored(out, manifest))
    rng = np.random.default_rng(1)
    identity_vectors = rng.normal(size=(5, 32))
    source_of = {key: fixture["images"][f"{key.removeprefix('ijbc_')}.jpg"] for key in keys}
    embeddings = np.array([identity_vectors[source_of[k][3]] + rng.normal(0, 0.8, 32) for k in keys])
    metrics = evaluate_ijb_folder(out, keys, embeddings, name="ijbc")
    kept = np.array([p for p in fixture["pairs"] if MISSING_TEMPLATE not in p[:2] and UNLISTED_TEMPLATE not in p[:2]])
    meta = np.array([source_of[k][:3] for k in keys])
    expected = ijb_verification(embeddings, meta[:, 0].astype(int), meta[:, 1].astype(int), meta[:, 2], kept)
    assert metrics == {f"ijbc_{k}": v for k, v in expected.items()}
    corrupt_pairs = sum(CORRUPT_TEMPLATE in p[:2] for p in kept.tolist())
    assert metrics["ijbc_pairs"] == len(kept) - corrupt_pairs and metrics["ijbc_pairs_dropped"] == corrupt_pairs
    assert metrics["ijbc_auc"] > 0.9  # identities separate: the pooling keeps what the images share
    with pytest.raises(ValueError, match="not in its IJB side file"):
        evaluate_ijb_folder(out, [*keys[:-1], "ijbc_nonexistent"], embeddings)
