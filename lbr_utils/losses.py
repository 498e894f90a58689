"""Contrastive losses, written out to be read: InfoNCE with in-batch and hard negatives, a
false-negative mask, and the Matryoshka wrapper.

InfoNCE (van den Oord et al., 2018) treats retrieval as classification: among every candidate
document in the batch, pick the query's own positive. With L2-normalised vectors and temperature
``tau`` the logits are ``cos(q_i, d_j) / tau`` and the loss is cross-entropy with target ``i``.
This is sentence-transformers' ``MultipleNegativesRankingLoss`` with ``scale = 1 / tau``; the tests
check that the two agree to float precision.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def info_nce(queries: torch.Tensor, positives: torch.Tensor, hard_negatives: torch.Tensor | None = None,
             temperature: float = 0.05, group_ids: Sequence | None = None,
             negative_group_ids: Sequence | None = None) -> torch.Tensor:
    """InfoNCE over in-batch negatives, plus optional hard negatives.

    Args:
        queries, positives: (B, D); row i of ``positives`` answers row i of ``queries``.
        hard_negatives: (B * k, D) or (B, k, D) mined negatives; every query sees all of them.
        temperature: softmax temperature (> 0). Lower sharpens the distribution over candidates.
        group_ids: the entity of each positive (B). Another candidate of the query's own entity is
            a *false negative* (the same answer reached another way) and is masked out of the softmax.
        negative_group_ids: the entity of each hard negative (B * k), masked the same way.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if queries.shape != positives.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and positives {tuple(positives.shape)} must match")
    candidates = positives
    if hard_negatives is not None:
        candidates = torch.cat([positives, hard_negatives.reshape(-1, positives.shape[-1])])
    # Cosines in fp32 even under bf16 autocast: near 1, bf16 steps by ~0.004, ~0.08 in the logits at t = 0.05.
    with torch.autocast(queries.device.type, enabled=False):
        logits = F.normalize(queries.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T / temperature
    if group_ids is not None:
        candidate_ids = list(group_ids) + (list(negative_group_ids) if hard_negatives is not None else [])
        if len(group_ids) != len(queries) or len(candidate_ids) != len(candidates):
            raise ValueError("need one group id per positive and, with hard negatives, per negative")
        same = torch.tensor([[a == b for b in candidate_ids] for a in group_ids], device=logits.device)
        same[:, : len(queries)].fill_diagonal_(False)  # the positive itself stays
        logits = logits.masked_fill(same, torch.finfo(logits.dtype).min)
    labels = torch.arange(len(queries), device=queries.device)
    return F.cross_entropy(logits, labels)


def matryoshka(loss_fn, dims: Sequence[int], weights: Sequence[float] | None = None):
    """Wrap a loss of (queries, positives, hard_negatives, ...) so it is summed over truncated prefixes.

    Matryoshka representation learning (Kusupati et al., 2022): the first ``d`` coordinates must
    work as an embedding on their own, for every ``d`` in ``dims``, so a reader can truncate later.
    """
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"Matryoshka dims must be positive, got {list(dims)}")
    weights = list(weights) if weights is not None else [1.0] * len(dims)
    if len(weights) != len(dims):
        raise ValueError("need one weight per Matryoshka dimension")

    def wrapped(queries, positives, hard_negatives=None, **kwargs):
        if max(dims) > queries.shape[-1]:
            raise ValueError(f"Matryoshka dim {max(dims)} exceeds the embedding size {queries.shape[-1]}")
        total = queries.new_zeros(())
        for d, w in zip(dims, weights):
            neg = None if hard_negatives is None else hard_negatives[..., :d]
            total = total + w * loss_fn(queries[..., :d], positives[..., :d], neg, **kwargs)
        return total

    return wrapped
