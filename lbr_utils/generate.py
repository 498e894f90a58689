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
def prefill(model, tokenizer, text: str, max_input: int, ratio: float | None = None):
    """Run the prompt once; return (logits at its last position, cache, next position id).

    With ``ratio``, the prompt is ``[x, B]`` and the cache keeps only B: what the target may see."""
    device = next(model.parameters()).device
    ids = bos_ids(tokenizer) + token_ids(tokenizer, text)[:max_input]
    n_input = len(ids)
    if ratio is not None:
        ids = with_bottleneck(tokenizer, ids, ratio, bottleneck_ids(tokenizer))
    out = model(input_ids=torch.tensor([ids], device=device), use_cache=True)
    cache = out.past_key_values
    if ratio is not None:
        keep_last_positions(cache, len(ids) - n_input)
    return out.logits[:, -1], cache, len(ids)


@torch.no_grad()
def greedy_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32, max_input: int = 64,
                    ratio: float | None = None, show_progress: bool = False) -> list[str]:
    """Greedy continuation of each prompt (one at a time: no padding to get wrong, and the KV cache
    makes each step one token). ``ratio``: decode from the bottleneck only (an IB-GL model)."""
    if not prompts:
        raise ValueError("greedy_generate() got no prompts")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for prompt in tqdm(prompts, desc="generate", disable=not show_progress):
        logits, cache, position = prefill(model, tokenizer, prompt, max_input, ratio)
        new: list[int] = []
        for _ in range(max_new_tokens):
            token = int(logits.argmax(-1))
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
            out = model(input_ids=torch.tensor([[token]], device=device), past_key_values=cache, use_cache=True,
                        position_ids=torch.tensor([[position]], device=device))
            logits, cache, position = out.logits[:, -1], out.past_key_values, position + 1
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
