"""IJB-B / IJB-C template-based 1:1 verification, insightface's protocol
(``recognition/_evaluation_/ijb/ijb_11.py``, REFERENCE.md §7 and §11.2), on embeddings of an
``ijbb``/``ijbc`` shard folder (shards/formats/ijb.py).

insightface's three switches, all on in its script:

* ``use_flip_test``: an image's feature is the sum of the embeddings of the image and its mirror
  (the caller's flip test does that before this module);
* ``use_norm_score``: that sum is kept unnormalised, its norm acting as a quality weight (off:
  each image feature is L2-normalised first);
* ``use_detector_score``: each image feature is multiplied by its detector score.

Then the media pooling: within a template, the images of one medium (frames of one video, or a
single photo) are averaged, and the template feature is the sum of its media features,
L2-normalised.  A template of three frames of one video and one photo is therefore
mean(frames) + photo: the video counts once.  A pair's score is the cosine of its two template
features; TAR at FAR 1e-6 .. 1e-1 and AUC come from the exact ROC (scikit-learn's ``roc_curve``
without dropping points, as insightface; AUC by trapezoids, ties counting half).

TAR@FAR follows facetrain/verification.py: the highest TPR among ROC points with FPR <= the
target, with the FAR of the lowest-FPR point giving it ("far_achieved"); null (left out) when
the mismatched pairs are fewer than 1/target.  insightface reads the point whose FPR is *nearest*
the target, possibly just above it: at IJB's pair counts the two differ by at most one false
accept (IJB-C: 1/15.6M of FAR).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse
from sklearn.metrics import auc, roc_curve

from shards.formats.ijb import NAMES, read_side_file
from shards.manifest import load_manifest

FAR_TARGETS = {"1e-6": 1e-6, "1e-5": 1e-5, "1e-4": 1e-4, "1e-3": 1e-3, "1e-2": 1e-2, "1e-1": 1e-1}
PAIRS_PER_BATCH = 8192
"""Pairs scored at once: two gathered (batch, D) float64 blocks, 64 MiB at D = 512, for any pair count."""


def template_features(embeddings_ND: np.ndarray, templates_N: np.ndarray, media_N: np.ndarray,
                      detector_scores_N: np.ndarray, use_norm_score: bool = True,
                      use_detector_score: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(sorted template ids (T,), unit template features (T, D) float64).

    A template feature is sum over media of the mean of the media's image features, i.e. a
    weighted sum of image features with weight 1 / (images of that medium in that template) (times
    the detector score, over the norm when ``use_norm_score`` is off): one sparse product, with no
    copy of the (N, D) embeddings."""
    embeddings_ND = np.asarray(embeddings_ND, dtype=np.float64)
    template_ids, template_of = np.unique(templates_N, return_inverse=True)
    _, medium_of, media_sizes = np.unique(np.stack([templates_N, media_N]), axis=1, return_inverse=True,
                                          return_counts=True)
    weights_N = 1.0 / media_sizes[medium_of]
    if not use_norm_score:
        weights_N /= np.linalg.norm(embeddings_ND, axis=1)
    if use_detector_score:
        weights_N *= detector_scores_N
    pooling_TN = scipy.sparse.csr_array((weights_N, (template_of, np.arange(len(weights_N)))),
                                        shape=(len(template_ids), len(weights_N)))
    features_TD = pooling_TN @ embeddings_ND
    return template_ids, features_TD / np.linalg.norm(features_TD, axis=1, keepdims=True)


def pair_scores(template_ids: np.ndarray, features_TD: np.ndarray,
                pairs_P2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cosine of each scorable pair's template features, mask of the pairs scored): a pair
    naming a template without features is left out."""
    rows_P2 = np.searchsorted(template_ids, pairs_P2).clip(max=len(template_ids) - 1)
    scored_P = (template_ids[rows_P2] == pairs_P2).all(1)
    rows_P2 = rows_P2[scored_P]
    scores = np.empty(len(rows_P2))
    for start in range(0, len(rows_P2), PAIRS_PER_BATCH):
        batch = rows_P2[start:start + PAIRS_PER_BATCH]
        scores[start:start + len(batch)] = np.einsum("pd,pd->p", features_TD[batch[:, 0]], features_TD[batch[:, 1]])
    return scores, scored_P


def tar_at_far(scores: np.ndarray, genuine: np.ndarray) -> dict[str, float]:
    """TAR and the FAR achieved at each of FAR_TARGETS the mismatched pairs allow, and the AUC."""
    fpr, tpr, _ = roc_curve(genuine, scores, drop_intermediate=False)
    negatives = int(np.count_nonzero(~genuine))
    metrics = {"auc": float(auc(fpr, tpr))}
    for label, target in FAR_TARGETS.items():
        if negatives < round(1 / target):  # one false accept would already exceed the target
            continue
        highest = np.searchsorted(fpr, target, side="right") - 1
        first = np.searchsorted(tpr, tpr[highest])  # the lowest FAR with that TAR
        metrics[f"tar_at_far_{label}"], metrics[f"far_achieved_{label}"] = float(tpr[first]), float(fpr[first])
    return metrics


def ijb_verification(embeddings_ND: np.ndarray, templates_N: np.ndarray, media_N: np.ndarray,
                     detector_scores_N: np.ndarray, pairs_P3: np.ndarray, use_norm_score: bool = True,
                     use_detector_score: bool = True) -> dict[str, float]:
    """The protocol on per-image embeddings (flip-summed by the caller) and the pairs (template 1,
    template 2, label 1/0): AUC, TAR/FAR achieved at each FAR target, pairs scored and dropped
    (a template with no embedded image), templates."""
    template_ids, features_TD = template_features(embeddings_ND, templates_N, media_N, detector_scores_N,
                                                  use_norm_score, use_detector_score)
    scores, scored = pair_scores(template_ids, features_TD, pairs_P3[:, :2])
    genuine = pairs_P3[scored, 2] == 1
    if genuine.all() or not genuine.any():
        raise ValueError(f"{int(scored.sum())} scorable pairs: the ROC needs matched and mismatched pairs")
    return {**tar_at_far(scores, genuine), "pairs": float(scored.sum()), "pairs_dropped": float((~scored).sum()),
            "templates": float(len(template_ids))}


def evaluate_ijb_folder(shards: str | Path, keys: Sequence[str], embeddings_ND: np.ndarray,
                        name: str | None = None) -> dict[str, float]:
    """The metrics of an ``ijbb``/``ijbc`` shard folder, from the embeddings of its "test" split
    (row i is the sample ``keys[i]``, flip-summed), named ``<name>_<metric>`` (name: the folder's)
    like the other benchmarks: ``ijbc_tar_at_far_1e-4``, ``ijbc_far_achieved_1e-4``, ``ijbc_auc``,
    ``ijbc_pairs``, ``ijbc_pairs_dropped``, ``ijbc_templates``.  Images without an embedding are
    left out (a template left with none drops its pairs, counted)."""
    manifest = load_manifest(Path(shards))
    if manifest.get("dataset_format") not in NAMES:
        raise ValueError(f"{shards}: a {manifest.get('dataset_format')} build, not an IJB one ({', '.join(NAMES)})")
    side = read_side_file(Path(shards), manifest)
    image_of = {key: i for i, key in enumerate(side["keys"].astype(str))}
    unknown = [key for key in keys if key not in image_of]
    if unknown:
        raise ValueError(f"{shards}: {len(unknown)} sample(s) not in its IJB side file, e.g. {unknown[0]}")
    images = np.array([image_of[key] for key in keys], dtype=np.int64)
    metrics = ijb_verification(embeddings_ND, side["template"][images], side["media"][images],
                               side["detector_score"][images], side["pairs"])
    prefix = name or Path(shards).name
    return {f"{prefix}_{metric}": value for metric, value in metrics.items()}
