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
O(anchors x references) for every mode; no O(B^3) triplet tensor is ever built.
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
    dist_AN = (x_AD.pow(2).sum(1, keepdim=True) + y_ND.pow(2).sum(1) - 2 * x_AD @ y_ND.T).clamp_min(0)
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
    dist_AN = pairwise_distance(anchors_AD, references_ND, squared)
    same_AN = anchor_labels_A[:, None] == reference_labels_N[None, :]
    not_self_AN = torch.ones_like(same_AN)
    not_self_AN[torch.arange(len(anchors_AD)), anchor_positions_A] = False
    positive_AN = same_AN & not_self_AN
    negative_AN = ~same_AN
    if mining == "batch_all":
        losses, d_ap, d_an = _batch_all(dist_AN, positive_AN, negative_AN, margin)
    elif mining == "batch_hard":
        losses, d_ap, d_an = _batch_hard(dist_AN, positive_AN, negative_AN, margin)
    else:
        losses, d_ap, d_an = _semi_hard(dist_AN, positive_AN, negative_AN, margin)
    active = losses > 0
    if mining == "batch_all":  # mean over non-zero triplets
        total, count = losses[active].sum(), active.sum()
    else:
        total, count = losses.sum(), torch.tensor(len(losses))
    with torch.no_grad():  # statistics for logging only
        negatives, zero = dist_AN[negative_AN], dist_AN.new_zeros(())
        stats = MiningStats(
            active_fraction=active.to(dist_AN.dtype).mean() if len(losses) else zero,
            mean_positive_distance=d_ap.mean() if len(d_ap) else zero,
            mean_negative_distance=d_an.mean() if len(d_an) else zero,
            hardest_negative_distance=negatives.min() if len(negatives) else zero,
            triplets=len(losses),
        )
    return total, count, stats


def _batch_all(dist_AN, positive_AN, negative_AN, margin):
    """All (a, p, n) with a valid p and n, enumerated per anchor to keep memory O(A x N) at a time."""
    losses, d_ap, d_an = [], [], []
    for a in range(len(dist_AN)):
        pos = dist_AN[a][positive_AN[a]]
        neg = dist_AN[a][negative_AN[a]]
        if len(pos) and len(neg):
            losses.append((pos[:, None] - neg[None, :] + margin).clamp_min(0).flatten())
            d_ap.append(pos.repeat_interleave(len(neg)))
            d_an.append(neg.repeat(len(pos)))
    if not losses:
        empty = dist_AN.new_zeros(0)
        return empty, empty, empty
    return torch.cat(losses), torch.cat(d_ap), torch.cat(d_an)


def _batch_hard(dist_AN, positive_AN, negative_AN, margin):
    valid = positive_AN.any(1) & negative_AN.any(1)
    hardest_positive = dist_AN.masked_fill(~positive_AN, float("-inf")).max(1).values
    hardest_negative = dist_AN.masked_fill(~negative_AN, float("inf")).min(1).values
    d_ap, d_an = hardest_positive[valid], hardest_negative[valid]
    return (d_ap - d_an + margin).clamp_min(0), d_ap, d_an


def _semi_hard(dist_AN, positive_AN, negative_AN, margin):
    anchor, positive = positive_AN.nonzero(as_tuple=True)
    has_negative = negative_AN[anchor].any(1)
    anchor, positive = anchor[has_negative], positive[has_negative]
    d_ap = dist_AN[anchor, positive]
    d_an_PN = dist_AN[anchor]  # one row per positive pair: O(pairs x N)
    negative_PN = negative_AN[anchor]
    farther_PN = negative_PN & (d_an_PN > d_ap[:, None])
    nearest_farther = d_an_PN.masked_fill(~farther_PN, float("inf")).min(1).values
    farthest = d_an_PN.masked_fill(~negative_PN, float("-inf")).max(1).values
    d_an = torch.where(farther_PN.any(1), nearest_farther, farthest)
    return (d_ap - d_an + margin).clamp_min(0), d_ap, d_an


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
