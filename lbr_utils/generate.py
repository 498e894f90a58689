"""Greedy generation, optionally *through* the bottleneck, and the generation metrics.

A model trained with the information-bottleneck mask never lets the target see the input, so at
generation time the input can be thrown away once the bottleneck has read it: run ``[x, B]`` once,
keep only the ``k`` bottleneck positions of the KV cache, and decode from those. That is exactly the
masked forward pass of training (a test checks it), and it is why the same machinery compresses
long contexts: the cache holds k entries instead of len(x) + k.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .pooling import bos_ids, bottleneck_ids, token_ids, with_bottleneck


def keep_last_positions(cache, k: int):
    """Drop all but the last ``k`` positions of every layer of a transformers ``DynamicCache``, in place."""
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys[:, :, -k:], layer.values[:, :, -k:]
    return cache


@torch.no_grad()
def prefill(model, tokenizer, text: str, max_input: int, ratio: float | None = None, suffix: str = "",
            bottleneck_length: int | None = None):
    """Run the prompt once; return (logits at its last position, cache, next position id).

    With ``ratio``, the prompt is ``[x, B]`` (``bottleneck_length`` tokens in B, by default
    ``ceil(len(x) / ratio)``) and the cache keeps only B, what the target may see;
    ``suffix`` (a question about x) is then read on top of that cache, seeing B but not x."""
    device = next(model.parameters()).device
    ids = bos_ids(tokenizer) + token_ids(tokenizer, text)[:max_input]
    n_input = len(ids)
    if ratio is not None:
        ids = with_bottleneck(tokenizer, ids, ratio, bottleneck_ids(tokenizer), bottleneck_length)
    suffix_ids = token_ids(tokenizer, suffix) if suffix else []
    if ratio is None:
        ids, suffix_ids = ids + suffix_ids, []
    out = model(input_ids=torch.tensor([ids], device=device), use_cache=True)
    cache, position = out.past_key_values, len(ids)
    if ratio is not None:
        keep_last_positions(cache, len(ids) - n_input)
    if suffix_ids:
        positions = torch.arange(position, position + len(suffix_ids), device=device).unsqueeze(0)
        out = model(input_ids=torch.tensor([suffix_ids], device=device), past_key_values=cache, use_cache=True,
                    position_ids=positions)
        cache, position = out.past_key_values, position + len(suffix_ids)
    return out.logits[:, -1], cache, position


def stack_caches(caches: list) -> tuple:
    """Single-prompt KV caches of different lengths as one batch cache, left-padded, with the 2D
    attention mask that hides the padding. Each prompt is prefilled alone (its own pass never sees
    padding, so a compressed prompt drops its input exactly as alone); only decoding is batched."""
    from transformers import DynamicCache

    lengths = [c.get_seq_length() for c in caches]
    width = max(lengths)
    batch = DynamicCache()
    for i in range(len(caches[0].layers)):
        pad = [(0, 0, width - n, 0) for n in lengths]
        batch.update(torch.cat([F.pad(c.layers[i].keys, p) for c, p in zip(caches, pad)]),
                     torch.cat([F.pad(c.layers[i].values, p) for c, p in zip(caches, pad)]), i)
    device = caches[0].layers[0].keys.device
    mask = torch.tensor([[0] * (width - n) + [1] * n for n in lengths], device=device)
    return batch, mask


@torch.no_grad()
def decode_greedy(model, logits: torch.Tensor, cache, position: int | torch.Tensor, max_new_tokens: int,
                  stop_id: int | None = None, attention_mask: torch.Tensor | None = None) -> list[list[int]]:
    """Greedy tokens after a prefill of a batch (``logits`` at each prompt's last position, shape
    (batch, vocab); their KV ``cache``; the next position id, one per row if they differ; the cache's
    ``attention_mask`` if it is padded), one token per step. A row stops at ``stop_id`` (never, if
    None); the loop stops when every row has. The one decoding loop of the book: chapter 5's
    generation, chapter 6's compressed reading and timing, chapter 7's inverter."""
    device = logits.device
    positions = torch.as_tensor(position, device=device).expand(len(logits)).reshape(-1, 1)
    rows: list[list[int]] = [[] for _ in range(len(logits))]
    done = [False] * len(logits)
    for _ in range(max_new_tokens):
        tokens = logits.argmax(-1)
        for i, token in enumerate(tokens.tolist()):
            done[i] = done[i] or token == stop_id
            if not done[i]:
                rows[i].append(token)
        if all(done):
            break
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(rows), 1)], 1)
        out = model(input_ids=tokens.unsqueeze(1), past_key_values=cache, use_cache=True, position_ids=positions,
                    attention_mask=attention_mask)
        logits, cache, positions = out.logits[:, -1], out.past_key_values, positions + 1
    return rows


@torch.no_grad()
def greedy_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32, max_input: int = 64,
                    ratio: float | None = None, suffixes: Sequence[str] | None = None,
                    show_progress: bool = False, batch_size: int = 32,
                    bottleneck_length: int | None = None) -> list[str]:
    """Greedy continuation of each prompt: prefilled one at a time (no padding inside a prompt's own
    pass), then decoded ``batch_size`` at a time from their stacked caches. ``ratio``: decode from
    the bottleneck only (an IB-GL model); ``suffixes``: a text per prompt read after it (after the
    bottleneck, if any)."""
    if not prompts:
        raise ValueError("greedy_generate() got no prompts")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    suffixes = list(suffixes) if suffixes is not None else [""] * len(prompts)
    model.eval()
    outputs = []
    pairs = list(zip(prompts, suffixes))
    for start in tqdm(range(0, len(pairs), batch_size), desc="generate", disable=not show_progress):
        logits, caches, positions = zip(*(prefill(model, tokenizer, p, max_input, ratio, s, bottleneck_length)
                                          for p, s in pairs[start:start + batch_size]))
        cache, mask = stack_caches(list(caches))
        rows = decode_greedy(model, torch.cat(logits), cache, torch.tensor(positions), max_new_tokens,
                             tokenizer.eos_token_id, attention_mask=mask)
        outputs += [tokenizer.decode(r, skip_special_tokens=True).strip() for r in rows]
    return outputs


def generation_scores(hypotheses: Sequence[str], references: Sequence[str],
                      per_question: bool = False) -> dict[str, float | list[float]]:
    """Corpus BLEU-4 (sacrebleu) and mean ROUGE-L F1 (rouge-score), both x100. ``per_question`` adds
    each answer's sentence BLEU-4 and ROUGE-L (lists, for a paired bootstrap over questions)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError("need one reference per hypothesis, and at least one")
    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = [100 * scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)]
    out: dict[str, float | list[float]] = {"BLEU-4": bleu, "ROUGE-L": sum(rouge) / len(rouge)}
    if per_question:
        out["BLEU-4 per question"] = [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hypotheses, references)]
        out["ROUGE-L per question"] = rouge
    return out
