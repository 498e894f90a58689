"""Instructions on queries, pooled over the query's own tokens (chapter 2).

Instruction-tuned embedders (E5-mistral, GritLM, NV-Embed) prepend a task instruction to every
query ("Instruct: Given a question, retrieve the passage that answers it\nQuery: ...") and leave
documents as they are. Where the pooled state is the last token (E5-mistral), that is all there is to
it. A *mean* over the prompt, though, averages the instruction's tokens in: a 20-token instruction
outweighs a 5-token query, and every query's vector drifts towards the same instruction vector.
GritLM and NV-Embed pool over the query's own tokens: the instruction still conditions every text
token under causal attention, without entering the average.

:class:`InstructedEmbedder` wraps an :class:`~lbr_utils.embedders.LLMEmbedder`: a text that starts
with the instruction is read as ``[BOS, instruction, text]`` and pooled over ``text``; any other text
(a document) is embedded by the wrapped embedder unchanged. The instructed row is the one the plain
embedder reads for ``instruction + text``; only the pool mask differs, so "last" is the same vector
either way and any difference between the two readings is the pooling's. Used as an
:class:`~lbr_utils.evaluate.Encoder` with ``query_prefix=instruction``, only queries get it.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import numpy as np
import torch

from .embedders import LLMEmbedder
from .pooling import bos_ids

PLAIN_POOLINGS = ("first", "mean", "last", "weighted_mean")


def instructed_inputs(tokenizer, texts: Sequence[str], instruction: str, max_length: int) -> dict[str, torch.Tensor]:
    """``[BOS, instruction + text]`` rows built exactly as the plain reading of the instructed query
    builds them (tokenised together, cut to ``max_length`` tokens), so the two differ only in what is
    pooled: here the tokens that hold a character of the text (a token straddling the boundary, such
    as " What" after "Query:", counts as the text's). Padded on the tokenizer's side."""
    bos, cut = bos_ids(tokenizer), len(instruction)
    rows = []
    for text in texts:
        enc = tokenizer(instruction + text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"][:max_length], enc["offset_mapping"][:max_length]
        rows.append((bos + ids, [0] * len(bos) + [int(end > cut) for _, end in offsets]))
    if any(sum(flags) == 0 for _, flags in rows):
        raise ValueError("an instructed text has no tokens of its own to pool over")
    width, pad, left = max(len(ids) for ids, _ in rows), tokenizer.pad_token_id, tokenizer.padding_side == "left"

    def padded(values: list[int], fill: int) -> list[int]:
        filler = [fill] * (width - len(values))
        return filler + values if left else values + filler

    return {"input_ids": torch.tensor([padded(ids, pad) for ids, _ in rows]),
            "attention_mask": torch.tensor([padded([1] * len(ids), 0) for ids, _ in rows]),
            "pool_mask": torch.tensor([padded(flags, 0) for _, flags in rows])}


class InstructedEmbedder:
    """``embedder`` with ``instruction`` read before a query and left out of its pooling."""

    def __init__(self, embedder: LLMEmbedder, instruction: str) -> None:
        if embedder.pooling.input_format != "plain" or embedder.pooling.pool not in PLAIN_POOLINGS:
            raise ValueError(f"pooling over the text alone needs a plain pooling ({', '.join(PLAIN_POOLINGS)}), "
                             f"not {embedder.pooling.name!r}")
        if not instruction:
            raise ValueError("an empty instruction: use the embedder itself")
        self.embedder, self.instruction = embedder, instruction

    @torch.no_grad()
    def _instructed(self, texts: list[str]) -> np.ndarray:
        e = self.embedder
        device = next(e.model.parameters()).device
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if e.bf16 else nullcontext()
        out = []
        for start in range(0, len(texts), e.batch_size):
            batch = instructed_inputs(e.tokenizer, texts[start:start + e.batch_size], self.instruction, e.max_length)
            with autocast:
                out.append(e.forward({k: v.to(device) for k, v in batch.items()}).float().cpu().numpy())
        return np.concatenate(out)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        queries = [i for i, t in enumerate(texts) if t.startswith(self.instruction)]
        out = np.empty((len(texts), self.embedder.model.config.hidden_size), dtype=np.float32)
        rest = [i for i in range(len(texts)) if i not in set(queries)]
        if queries:
            out[queries] = self._instructed([texts[i][len(self.instruction):] for i in queries])
        if rest:
            out[rest] = self.embedder.embed([texts[i] for i in rest])
        return out

    __call__ = encode = embed
