"""Pooling: turn a causal LM's per-token hidden states into one vector per text.

Every function takes ``hidden`` (batch, seq, dim) and the ``attention_mask`` (batch, seq) and must
give a text the same vector alone or inside a padded batch, with left or right padding: a pad
state must never leak into the result.
"""

from __future__ import annotations

import torch


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the non-pad token states."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """State of the last non-pad token: for a causal LM the only one that has seen the whole text.

    Works for either padding side: the index of the last 1 in each mask row.
    """
    seq = attention_mask.shape[1]
    positions = torch.arange(seq, device=attention_mask.device).expand_as(attention_mask)
    last = (positions * attention_mask).argmax(1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


POOLINGS = {"mean": mean_pool, "last": last_token_pool}


def get_pooling(name: str):
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}")
    return POOLINGS[name]
