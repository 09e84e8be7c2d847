"""Triplet loss with online mining, as pure functions of embeddings and labels.

Paper (papers/soft-attention-facenet-brain-tumor.txt §III-C): L = max(d(a, p) - d(a, n) + α, 0)
over L2-normalised embeddings; FaceNet uses the squared Euclidean distance and α = 0.2.
Mining definitions are those of REFERENCE.md §7:

* ``batch_all``: every valid triplet (p != a of a's identity, n of another); the loss is the
  mean over *active* (non-zero) triplets (PML's AvgNonZeroReducer), 0 when none is active.
* ``batch_hard`` (Hermans et al.): per anchor, its farthest positive and nearest negative;
  mean over anchors that have both.
* ``semi_hard`` (FaceNet §3.2): per positive pair (a, p), the nearest negative that is still
  farther than the positive, d(a, n) > d(a, p) (it is semi-hard when also within the margin).
  Fallback when every negative is closer than the positive: the farthest negative, as
  TensorFlow's ``triplet_semihard_loss`` does, so the pair still contributes a bounded loss.
  Mean over positive pairs that have a negative.

Anchors come from ``anchors`` and candidates from ``references`` (the same tensor in one
process; the global, gathered batch in cross-rank mining).  ``anchor_positions`` gives each
anchor's row in ``references`` so it never counts as its own positive.  Memory is
O(anchors x references), plus for ``batch_all`` a (anchors x positives x references) tensor
evaluated in chunks of at most ``TRIPLET_CHUNK`` elements.  Mining runs without autograd;
the loss is then built from the selected distances only, so backward stays O(selected x D)
(O(A x N) through the distance matrix for ``batch_all``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from launcher.runtime.dist import DistInfo, all_gather_tensor, all_gather_with_grad, all_reduce_sum

MODES = ("batch_all", "batch_hard", "semi_hard")


@dataclass
class MiningStats:
    """0-dim tensors on the embeddings' device: logging reads them only at its interval."""

    active_fraction: torch.Tensor
    """Share of the selected triplets with a non-zero loss."""
    mean_positive_distance: torch.Tensor
    mean_negative_distance: torch.Tensor
    hardest_negative_distance: torch.Tensor
    """Smallest anchor-negative distance in the batch."""
    triplets: int
    """Triplets (or anchors / pairs) the loss averaged over before the non-zero filter."""


def pairwise_distance(x_AD: torch.Tensor, y_ND: torch.Tensor, squared: bool) -> torch.Tensor:
    """Euclidean (or squared) distances, computed as |x|^2 + |y|^2 - 2 x.y and clamped at 0.
    The square root has a small floor so that identical points do not give NaN gradients."""
    norms_AN = x_AD.pow(2).sum(1, keepdim=True) + y_ND.pow(2).sum(1)
    dist_AN = norms_AN.addmm_(x_AD, y_ND.T, alpha=-2).clamp_min_(0)  # in place: no new A x N buffers
    return dist_AN if squared else dist_AN.clamp_min(1e-12).sqrt()


def triplet_loss(
    anchors_AD: torch.Tensor,
    anchor_labels_A: torch.Tensor,
    references_ND: torch.Tensor,
    reference_labels_N: torch.Tensor,
    anchor_positions_A: torch.Tensor,
    margin: float = 0.2,
    mining: str = "semi_hard",
    squared: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, MiningStats]:
    """(sum of the selected losses, how many were selected, statistics).

    The caller divides the sum by the count (summed over ranks in cross-rank mining), so that a
    batch split over ranks gives the same mean as one process over the whole batch.
    """
    if mining not in MODES:
        raise ValueError(f"mining must be one of {MODES}, got {mining!r}")
    same_AN = anchor_labels_A[:, None] == reference_labels_N[None, :]
    positive_AN = same_AN.clone()
    positive_AN[torch.arange(len(anchors_AD)), anchor_positions_A] = False
    if mining == "batch_all":  # the loss uses (nearly) every distance: keep the matrix in the graph
        return _batch_all(pairwise_distance(anchors_AD, references_ND, squared), positive_AN, same_AN, margin)
    with torch.no_grad():  # mining needs no graph; the few selected distances are recomputed with one
        dist_AN = pairwise_distance(anchors_AD, references_ND, squared)
        pick = _batch_hard if mining == "batch_hard" else _semi_hard
        anchor, positive, negative, nearest_negative_A = pick(dist_AN, positive_AN, same_AN)
    d_ap = _selected_distance(anchors_AD, references_ND, anchor, positive, squared)
    d_an = _selected_distance(anchors_AD, references_ND, anchor, negative, squared)
    losses = (d_ap - d_an + margin).clamp_min(0)
    with torch.no_grad():  # statistics for logging only
        zero = dist_AN.new_zeros(())
        stats = MiningStats(
            active_fraction=(losses > 0).to(losses.dtype).mean() if len(losses) else zero,
            mean_positive_distance=d_ap.mean() if len(d_ap) else zero,
            mean_negative_distance=d_an.mean() if len(d_an) else zero,
            hardest_negative_distance=_smallest(nearest_negative_A),
            triplets=len(losses),
        )
    return losses.sum(), torch.tensor(len(losses)), stats


def _smallest(nearest_negative_A):
    """The batch's smallest anchor-negative distance, 0 when there is no negative (inf marks none)."""
    nearest = nearest_negative_A.min() if len(nearest_negative_A) else nearest_negative_A.new_zeros(())
    return torch.where(nearest.isinf(), 0.0, nearest)


def _selected_distance(anchors_AD, references_ND, anchor_T, other_T, squared):
    """Distances of the selected pairs only, so that backward touches O(T x D), not O(A x N)."""
    # index_select: its backward is index_add_, several times faster on CPU than indexing's index_put_
    dist_T = (anchors_AD.index_select(0, anchor_T) - references_ND.index_select(0, other_T)).pow(2).sum(1)
    return dist_T if squared else dist_T.clamp_min(1e-12).sqrt()


def _batch_hard(dist_AN, positive_AN, same_AN):
    """(anchor, farthest positive, nearest negative) for every anchor that has both, and each
    anchor's nearest negative distance. Overwrites ``dist_AN``."""
    farthest_positive = dist_AN.masked_fill(~positive_AN, float("-inf")).max(1)
    nearest_negative = dist_AN.masked_fill_(same_AN, float("inf")).min(1)
    anchor = (farthest_positive.values.isfinite() & nearest_negative.values.isfinite()).nonzero().flatten()
    return anchor, farthest_positive.indices[anchor], nearest_negative.indices[anchor], nearest_negative.values


def _semi_hard(dist_AN, positive_AN, same_AN):
    """(anchor, positive, nearest negative strictly farther than the positive, else the farthest
    negative) for every positive pair whose anchor has a negative. Overwrites ``dist_AN``."""
    anchor, positive = positive_AN.nonzero(as_tuple=True)
    d_ap = dist_AN[anchor, positive]
    negative_dist_AN = dist_AN.masked_fill_(same_AN, float("inf"))  # inf: not a negative
    nearest_negative_A = negative_dist_AN.min(1).values
    has_negative = nearest_negative_A[anchor].isfinite()
    anchor, positive, d_ap = anchor[has_negative], positive[has_negative], d_ap[has_negative]
    d_an_PN = negative_dist_AN[anchor]  # one row per positive pair: O(pairs x N)
    nearest_farther = d_an_PN.masked_fill(d_an_PN <= d_ap[:, None], float("inf")).min(1)
    farthest = d_an_PN.masked_fill_(d_an_PN.isinf(), float("-inf")).max(1).indices
    negative = torch.where(nearest_farther.values.isfinite(), nearest_farther.indices, farthest)
    return anchor, positive, negative, nearest_negative_A


# Elements of one chunk's (anchors x positives x references) tensor: bounds batch-all's memory.
TRIPLET_CHUNK = 1 << 22


def _batch_all(dist_AN, positive_AN, same_AN, margin):
    """Every valid triplet, its hinge evaluated on (anchors x positives x references) chunks.

    The loss sums d(a,p) - d(a,n) + margin over the active triplets, so it is linear in the
    distances: sum(weight_AN * dist_AN) + margin * active, where a positive's weight is how many
    active triplets use it and a negative's is minus that count. Only these counts come from the
    triplet tensor, without a graph; backward is that of the distance matrix.
    """
    with torch.no_grad():
        positive_AP, d_ap_AP = _positives_packed(dist_AN, positive_AN)
        d_an_AN = dist_AN.masked_fill(same_AN, float("inf"))  # never active
        weight_AN = torch.zeros_like(dist_AN)
        count_AP = torch.zeros(d_ap_AP.shape, dtype=torch.long, device=d_ap_AP.device)  # exact beyond 2^24
        chunk = max(1, TRIPLET_CHUNK // max(1, d_ap_AP.shape[1] * d_an_AN.shape[1]))
        for start in range(0, len(d_ap_AP), chunk):
            rows = slice(start, start + chunk)
            active_CPN = (d_ap_AP[rows, :, None] - d_an_AN[rows, None, :] + margin) > 0
            count_AP[rows] = active_CPN.sum(2)
            weight_AN[rows] = -active_CPN.sum(1).to(weight_AN.dtype)
        weight_AN.scatter_add_(1, positive_AP, count_AP.to(weight_AN.dtype))  # padding slots add 0
        active = count_AP.sum()
    total = (weight_AN * dist_AN).sum() + margin * active.to(dist_AN.dtype)
    return total, active, _batch_all_stats(dist_AN.detach(), positive_AN, ~same_AN, active, d_an_AN)


def _batch_all_stats(dist_AN, positive_AN, negative_AN, active, d_an_AN):
    """Statistics over all valid triplets, from per-anchor counts (no triplet tensor)."""
    num_positive_A, num_negative_A = positive_AN.sum(1), negative_AN.sum(1)
    triplets = int((num_positive_A * num_negative_A).sum())
    per_triplet, zero = max(triplets, 1), dist_AN.new_zeros(())
    return MiningStats(
        active_fraction=active / per_triplet if triplets else zero,
        mean_positive_distance=(dist_AN * positive_AN * num_negative_A[:, None]).sum() / per_triplet,
        mean_negative_distance=(dist_AN * negative_AN * num_positive_A[:, None]).sum() / per_triplet,
        hardest_negative_distance=_smallest(d_an_AN.min(1).values if d_an_AN.numel() else d_an_AN.new_zeros(0)),
        triplets=triplets,
    )


def _positives_packed(dist_AN, positive_AN):
    """(column of each anchor's positives, their distances), padded to the largest count with
    distance -inf (never active): (A x P) with P positives per identity, not (A x N)."""
    width = int(positive_AN.sum(1).max()) if positive_AN.numel() else 0
    is_positive_AP, positive_AP = positive_AN.to(dist_AN.dtype).topk(width, dim=1)
    d_ap_AP = dist_AN.gather(1, positive_AP).masked_fill(is_positive_AP == 0, float("-inf"))
    return positive_AP, d_ap_AP


def distributed_triplet_loss(
    embeddings_BD: torch.Tensor,
    labels_B: torch.Tensor,
    dist: DistInfo,
    margin: float = 0.2,
    mining: str = "semi_hard",
    squared: bool = True,
) -> tuple[torch.Tensor, MiningStats]:
    """Each rank's anchors mine positives and negatives in the global batch (REFERENCE.md §7.4).

    Memory O(B x W·B).  The loss is scaled so that, after the engine averages gradients over W
    ranks, training equals one process over the concatenated batch: rank k returns
    W · (sum of its selected losses) / (selected count over all ranks); the mean of the ranks'
    losses is the single-process loss.  Every rank must pass the same batch size.
    """
    references = all_gather_with_grad(embeddings_BD, dist)
    reference_labels = all_gather_tensor(labels_B, dist)
    positions = dist.rank * len(labels_B) + torch.arange(len(labels_B), device=labels_B.device)
    total, count, stats = triplet_loss(embeddings_BD, labels_B, references, reference_labels, positions,
                                       margin, mining, squared)
    # On the device, no host sync; no triplet on any rank means every total is an empty sum, 0.
    global_count = all_reduce_sum(count.reshape(1).to(total.device, torch.float64), dist)
    return total * (dist.world_size / global_count.clamp_min(1)).to(total.dtype).reshape(()), stats
