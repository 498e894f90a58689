"""The information-bottleneck attention mask (LBR stage 1, gist tokens, context compression).

A sequence is laid out as ``[x, B, y]``: the input, ``k`` bottleneck tokens, the target. Each token
carries a *segment* code, and the mask follows from the codes alone:

    x  attends causally to x;
    B  attends to x and to earlier B;
    y  attends to B and to earlier y, never to x.

So everything ``y`` learns about ``x`` has to pass through the ``k`` bottleneck states: the
generative loss on ``y`` forces the model to compress ``x`` into ``B``.

The mask is a float 4D additive mask ``(batch, 1, seq, seq)`` with padding folded in, because that
is what transformers passes through untouched to both ``eager`` and ``sdpa`` attention. Blocked
entries hold ``finfo(dtype).min`` rather than ``-inf`` (a row of ``-inf`` is NaN after softmax) and
never a bool mask (eager attention would *add* it as 0/1). A pad query attends to itself only, so no
row is ever fully blocked, in fp32 or bf16.
"""

from __future__ import annotations

import math

import torch

PAD, INPUT, BOTTLENECK, TARGET = 0, 1, 2, 3


def bottleneck_count(n_input_tokens: int, ratio: float) -> int:
    """``k = ceil(len(x) / r)`` bottleneck tokens for an input of ``n_input_tokens`` at compression ratio ``r``."""
    if ratio <= 0:
        raise ValueError(f"compression ratio must be > 0, got {ratio}")
    if n_input_tokens < 1:
        raise ValueError("the input is empty: there is nothing to compress into bottleneck tokens")
    return max(1, math.ceil(n_input_tokens / ratio))


def allowed_attention(segments: torch.Tensor, bottleneck_sees_input: bool = True,
                      documents: torch.Tensor | None = None) -> torch.Tensor:
    """Bool ``(batch, seq, seq)``: may query ``i`` attend to key ``j``?

    ``segments`` is ``(batch, seq)`` of PAD/INPUT/BOTTLENECK/TARGET codes, in any padding layout.
    ``bottleneck_sees_input=False`` also cuts B from x; only the leakage tests want that (with it,
    nothing of x can reach y through any number of layers). ``documents`` (same shape) numbers the
    examples packed into a row: a token attends only within its own example.
    """
    seq = segments.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=segments.device).tril()
    q, k = segments.unsqueeze(2), segments.unsqueeze(1)
    allowed = causal & (k != PAD) & (q != PAD)
    if documents is not None:
        allowed &= documents.unsqueeze(2) == documents.unsqueeze(1)
    allowed &= ~((q == TARGET) & (k == INPUT))
    if not bottleneck_sees_input:
        allowed &= ~((q == BOTTLENECK) & (k == INPUT))
    pad_query = (segments == PAD).unsqueeze(2) & torch.eye(seq, dtype=torch.bool, device=segments.device)
    return allowed | pad_query


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Turn a bool ``(batch, q, k)`` mask into transformers' float ``(batch, 1, q, k)`` additive mask."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def ib_attention_mask(segments: torch.Tensor, dtype: torch.dtype = torch.float32,
                      bottleneck_sees_input: bool = True, documents: torch.Tensor | None = None) -> torch.Tensor:
    """The information-bottleneck mask for ``segments``, ready to pass as ``attention_mask``."""
    return additive_mask(allowed_attention(segments, bottleneck_sees_input, documents), dtype)
