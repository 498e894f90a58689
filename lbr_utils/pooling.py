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

from .masks import bottleneck_count
from .models import BOTTLENECK_TOKEN

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
    """A named pooling: an input format (``plain``, ``prompteol``, ``echo``, ``bottleneck``) and a
    pool function. ``ratio`` is the compression ratio of the ``bottleneck`` format (LBR's embedding:
    the text, then its bottleneck tokens, read at the last of them); ``k`` fixes how many follow every
    text (0: ``ceil(len / ratio)`` for each text, as a context compressor reads)."""

    name: str
    input_format: str
    pool: str
    ratio: float = 0.0
    k: int = 0


POOLINGS = {p.name: p for p in [
    Pooling("first", "plain", "first"),
    Pooling("mean", "plain", "mean"),
    Pooling("last", "plain", "last"),
    Pooling("weighted_mean", "plain", "weighted_mean"),
    Pooling("prompteol", "prompteol", "last"),
    Pooling("echo", "echo", "mean"),
]}


def bottleneck_pooling(ratio: float, max_length: int | None = None) -> Pooling:
    """LBR's embedding: the last bottleneck token's state after ``[x, B]``, causal attention kept.

    With ``max_length`` every text gets the same ``k = ceil((max_length + 1) / ratio)`` bottleneck
    tokens (the +1 is room for a BOS): the paper's fixed-length bottleneck, so the embedding is always
    the state of the same ``<bn_k>``, the one stage 1 trained. Without it, ``k`` follows each text."""
    bottleneck_count(1, ratio)  # validates the ratio
    k = bottleneck_count(max_length + 1, ratio) if max_length else 0
    return Pooling(f"bottleneck (r={ratio:g}{f', k={k}' if k else ''})", "bottleneck", "last", ratio, k)


def get_pooling(name: str | Pooling) -> Pooling:
    if isinstance(name, Pooling):
        return name
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}")
    return POOLINGS[name]


def token_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def bos_ids(tokenizer) -> list[int]:
    """``[bos]`` for tokenizers that prepend one (Llama, Qwen's do not), else ``[]``."""
    if getattr(tokenizer, "add_bos_token", False) and tokenizer.bos_token_id is not None:
        return [tokenizer.bos_token_id]
    return []


def bottleneck_ids(tokenizer) -> list[int]:
    """Ids of the bottleneck tokens ``<bn_0>, <bn_1>, ...`` the tokenizer holds, in order."""
    vocab, out = tokenizer.get_vocab(), []
    while (token := BOTTLENECK_TOKEN.format(len(out))) in vocab:
        out.append(vocab[token])
    return out


def with_bottleneck(tokenizer, body: list[int], ratio: float, available: list[int], k: int | None = None) -> list[int]:
    """``body`` followed by ``k`` bottleneck tokens (by default its own ``ceil(len / ratio)``)."""
    k = k or bottleneck_count(len(body), ratio)
    if k > len(available):
        raise ValueError(f"{len(body)} tokens at ratio {ratio:g} need {k} bottleneck tokens but the tokenizer has "
                         f"{len(available)}: call add_bottleneck_tokens(model, tokenizer, k) with k >= {k}")
    return body + available[:k]


def build_inputs(tokenizer, texts: list[str], pooling: Pooling, max_length: int, pack_width: int | None = None,
                 causal: bool = True) -> dict[str, torch.Tensor]:
    """Token ids, attention mask and pool mask for ``texts`` in ``pooling``'s input format.

    The text itself is truncated to ``max_length`` tokens before any template is added, so a
    template never pushes the text out. Padding follows ``tokenizer.padding_side``.

    ``pack_width`` (for training) packs several texts into rows of at most that many tokens, with the
    same layout trick as LBR's packed batches: each text keeps its own positions, a 4D mask lets it
    attend only within itself (causally, or both ways with ``causal=False``), and ``unpack_index`` /
    ``unpack_mask`` gather each text's states back into one padded row per text, so every pooling
    reads exactly what it reads unpacked.
    """
    rows: list[tuple[list[int], list[int]]] = []  # (ids, pool flags)
    bos = bos_ids(tokenizer)
    available = bottleneck_ids(tokenizer) if pooling.input_format == "bottleneck" else []
    for text in texts:
        body = token_ids(tokenizer, text)[:max_length]
        if pooling.input_format == "plain":
            ids, flags = bos + body, [0] * len(bos) + [1] * len(body)
        elif pooling.input_format == "prompteol":
            pre, post = PROMPTEOL_TEMPLATE.split("{}")
            ids = bos + token_ids(tokenizer, pre) + body + token_ids(tokenizer, post)
            flags = [1] * len(ids)
        elif pooling.input_format == "echo":
            first = bos + token_ids(tokenizer, ECHO_TEMPLATE[0]) + body + token_ids(tokenizer, ECHO_TEMPLATE[1])
            ids, flags = first + body, [0] * len(first) + [1] * len(body)
        elif pooling.input_format == "bottleneck":
            ids = with_bottleneck(tokenizer, bos + body, pooling.ratio, available, pooling.k or None)
            flags = [0] * (len(bos) + len(body)) + [1] * (len(ids) - len(bos) - len(body))
        else:
            raise ValueError(f"unknown input format {pooling.input_format!r}")
        rows.append((ids, flags))
    if pack_width:
        return _packed_inputs(tokenizer, rows, pack_width, causal)
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


def _packed_inputs(tokenizer, rows: list[tuple[list[int], list[int]]], width: int, causal: bool) -> dict[str, torch.Tensor]:
    """Pack ``(ids, pool flags)`` rows into rows of at most ``width`` tokens (see :func:`build_inputs`)."""
    from .batching import pack_rows
    from .masks import additive_mask

    groups = pack_rows([len(ids) for ids, _ in rows], width)
    seq = max(sum(len(rows[i][0]) for i in g) for g in groups)
    longest = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(groups), seq), tokenizer.pad_token_id)
    positions = torch.zeros((len(groups), seq), dtype=torch.long)
    documents = torch.full((len(groups), seq), -1)
    unpack_index = torch.zeros((len(rows), longest), dtype=torch.long)
    unpack_mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for r, group in enumerate(groups):
        start = 0
        for i in group:
            ids, flags = rows[i]
            span = slice(start, start + len(ids))
            input_ids[r, span] = torch.tensor(ids)
            positions[r, span] = torch.arange(len(ids))
            documents[r, span] = i
            unpack_index[i, :len(ids)] = torch.arange(r * seq + start, r * seq + start + len(ids))
            unpack_mask[i, :len(ids)] = torch.tensor(flags)
            start += len(ids)
    same = documents.unsqueeze(2) == documents.unsqueeze(1)
    real = documents >= 0
    allowed = same & real.unsqueeze(2) & real.unsqueeze(1)
    if causal:
        allowed &= torch.ones(seq, seq, dtype=torch.bool).tril()
    allowed |= (~real).unsqueeze(2) & torch.eye(seq, dtype=torch.bool)  # a pad attends to itself only
    return {"input_ids": input_ids, "attention_mask": additive_mask(allowed), "position_ids": positions,
            "pool_mask": unpack_mask, "unpack_index": unpack_index}
