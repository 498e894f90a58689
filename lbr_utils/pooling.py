"""Pooling: turn a causal LM's per-token hidden states into one vector per text.

A *pooling* here has two halves: how the text is put to the model (plain, inside a prompt, or
repeated), and which hidden states are combined (first, mean, last, position-weighted mean). The
second half works on a ``pool_mask`` (batch, seq) marking the tokens to pool over, so the same
functions serve a plain text (pool over all of it) and an echo input (pool over the second copy).

Every pooling must give a text the same vector alone or inside a padded batch, with left or right
padding: a pad state must never leak into the result. The tests check exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# PromptEOL (Jiang et al., 2023): squeeze the meaning into the next word, read the last state.
PROMPTEOL_TEMPLATE = 'This sentence : "{}" means in one word:"'
# Echo embeddings (Springer et al., 2024): in the second copy every token has seen the whole text.
ECHO_TEMPLATE = ("Rewrite the sentence: ", "\nRewritten sentence: ")


def first_pool(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """State of the first pooled token. Under causal attention it has seen only itself."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), pool_mask.int().argmax(1)]


def last_pool(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """State of the last pooled token: for a causal LM the only one that has seen the whole text.
    The index of the last 1 in each row, so either padding side works."""
    positions = torch.arange(pool_mask.shape[1], device=pool_mask.device).expand_as(pool_mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), (positions * pool_mask).argmax(1)]


def mean_pool(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """Average of the pooled token states."""
    mask = pool_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def weighted_mean_pool(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """Position-weighted mean (SGPT, Muennighoff 2022): the i-th pooled token weighs i, because later
    tokens of a causal LM have seen more of the text. Ranks count pooled tokens only, so pads on the
    left do not shift the weights."""
    weights = (pool_mask.cumsum(1) * pool_mask).unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


POOL_FNS = {"first": first_pool, "last": last_pool, "mean": mean_pool, "weighted_mean": weighted_mean_pool}


@dataclass(frozen=True)
class Pooling:
    """A named pooling: an input format (``plain``, ``prompteol``, ``echo``) and a pool function."""

    name: str
    input_format: str
    pool: str


POOLINGS = {p.name: p for p in [
    Pooling("first", "plain", "first"),
    Pooling("mean", "plain", "mean"),
    Pooling("last", "plain", "last"),
    Pooling("weighted_mean", "plain", "weighted_mean"),
    Pooling("prompteol", "prompteol", "last"),
    Pooling("echo", "echo", "mean"),
]}


def get_pooling(name: str) -> Pooling:
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}")
    return POOLINGS[name]


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def build_inputs(tokenizer, texts: list[str], pooling: Pooling, max_length: int) -> dict[str, torch.Tensor]:
    """Token ids, attention mask and pool mask for ``texts`` in ``pooling``'s input format.

    The text itself is truncated to ``max_length`` tokens before any template is added, so a
    template never pushes the text out. Padding follows ``tokenizer.padding_side``.
    """
    rows: list[tuple[list[int], list[int]]] = []  # (ids, pool flags)
    bos = [tokenizer.bos_token_id] if getattr(tokenizer, "add_bos_token", False) and tokenizer.bos_token_id is not None else []
    for text in texts:
        body = _ids(tokenizer, text)[:max_length]
        if pooling.input_format == "plain":
            ids, flags = bos + body, [0] * len(bos) + [1] * len(body)
        elif pooling.input_format == "prompteol":
            pre, post = PROMPTEOL_TEMPLATE.split("{}")
            ids = bos + _ids(tokenizer, pre) + body + _ids(tokenizer, post)
            flags = [1] * len(ids)
        elif pooling.input_format == "echo":
            first = bos + _ids(tokenizer, ECHO_TEMPLATE[0]) + body + _ids(tokenizer, ECHO_TEMPLATE[1])
            ids, flags = first + body, [0] * len(first) + [1] * len(body)
        else:
            raise ValueError(f"unknown input format {pooling.input_format!r}")
        rows.append((ids, flags))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    input_ids, attention, pool = [], [], []
    for ids, flags in rows:
        n = width - len(ids)
        left = tokenizer.padding_side == "left"
        input_ids.append([pad] * n + ids if left else ids + [pad] * n)
        attention.append([0] * n + [1] * len(ids) if left else [1] * len(ids) + [0] * n)
        pool.append([0] * n + flags if left else flags + [0] * n)
    return {"input_ids": torch.tensor(input_ids), "attention_mask": torch.tensor(attention),
            "pool_mask": torch.tensor(pool)}
