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
from tqdm.auto import tqdm

from .pooling import bos_ids, bottleneck_ids, token_ids, with_bottleneck


def keep_last_positions(cache, k: int):
    """Drop all but the last ``k`` positions of every layer of a transformers ``DynamicCache``, in place."""
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys[:, :, -k:], layer.values[:, :, -k:]
    return cache


@torch.no_grad()
def prefill(model, tokenizer, text: str, max_input: int, ratio: float | None = None, suffix: str = ""):
    """Run the prompt once; return (logits at its last position, cache, next position id).

    With ``ratio``, the prompt is ``[x, B]`` and the cache keeps only B, what the target may see;
    ``suffix`` (a question about x) is then read on top of that cache, seeing B but not x."""
    device = next(model.parameters()).device
    ids = bos_ids(tokenizer) + token_ids(tokenizer, text)[:max_input]
    n_input = len(ids)
    if ratio is not None:
        ids = with_bottleneck(tokenizer, ids, ratio, bottleneck_ids(tokenizer))
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


@torch.no_grad()
def decode_greedy(model, logits: torch.Tensor, cache, position: int, max_new_tokens: int,
                  stop_id: int | None = None) -> list[list[int]]:
    """Greedy tokens after a prefill of a batch of equal-length prompts (``logits`` at their last
    position, shape (batch, vocab); their KV ``cache``; the next position id), one token per step.
    A row stops at ``stop_id`` (never, if None); the loop stops when every row has. The one decoding
    loop of the book: chapter 5's generation, chapter 6's compressed reading and timing, chapter 7's
    inverter (a whole batch at once: its prompts are all ``prefix_len`` soft tokens)."""
    device = logits.device
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
        out = model(input_ids=tokens.unsqueeze(1), past_key_values=cache, use_cache=True,
                    position_ids=torch.full((len(rows), 1), position, device=device))
        logits, cache, position = out.logits[:, -1], out.past_key_values, position + 1
    return rows


@torch.no_grad()
def greedy_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32, max_input: int = 64,
                    ratio: float | None = None, suffixes: Sequence[str] | None = None,
                    show_progress: bool = False) -> list[str]:
    """Greedy continuation of each prompt (one at a time: no padding to get wrong, and the KV cache
    makes each step one token). ``ratio``: decode from the bottleneck only (an IB-GL model);
    ``suffixes``: a text per prompt read after it (after the bottleneck, if any)."""
    if not prompts:
        raise ValueError("greedy_generate() got no prompts")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    suffixes = list(suffixes) if suffixes is not None else [""] * len(prompts)
    model.eval()
    outputs = []
    for prompt, suffix in tqdm(list(zip(prompts, suffixes)), desc="generate", disable=not show_progress):
        [new] = decode_greedy(model, *prefill(model, tokenizer, prompt, max_input, ratio, suffix), max_new_tokens,
                              tokenizer.eos_token_id)
        outputs.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return outputs


def generation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU-4 (sacrebleu) and mean ROUGE-L F1 (rouge-score), both x100."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError("need one reference per hypothesis, and at least one")
    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)) / len(hypotheses)
    return {"BLEU-4": bleu, "ROUGE-L": 100 * rouge}
