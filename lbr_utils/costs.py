"""What decoding from a compressed context costs, against the full one: time and cache size.

Kept apart from :mod:`lbr_utils.compress` (the training and scoring of chapter 6) so that a timing
can be retaken, on an idle machine, without retraining the compressors it does not depend on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from .generate import decode_greedy, prefill
from .pooling import token_ids


def cache_bytes(cache) -> int:
    """Bytes held by a transformers KV cache (keys and values of every layer)."""
    return sum(layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
               for layer in cache.layers)


@torch.no_grad()
def decoding_cost(model, tokenizer, passage: str, ratio: float | None, new_tokens: int = 32) -> dict[str, float]:
    """Time per generated token, end to end (prefill + ``new_tokens`` decoding steps) and KV-cache size
    when decoding after ``passage``, full (``ratio=None``) or compressed into ``ceil(len / ratio)``
    bottleneck tokens. The compressed prefill still reads the whole passage (and the bottleneck), so
    compression pays per token only: end to end it wins once the answer is long enough, or when one
    compressed cache serves many answers. Quality does not matter here, only what each step attends to."""
    n = len(token_ids(tokenizer, passage))
    start = time.perf_counter()
    logits, cache, position = prefill(model, tokenizer, passage, n, ratio)
    prefill_s = time.perf_counter() - start
    size = cache_bytes(cache)
    start = time.perf_counter()
    generated = decode_greedy(model, logits, cache, position, new_tokens)[0]  # no stop token: exactly new_tokens
    decode_s = time.perf_counter() - start
    if len(generated) != new_tokens:  # equal work: both readings decode the same number of tokens
        raise RuntimeError(f"decoded {len(generated)} tokens, not {new_tokens}")
    return {"passage_tokens": n, "cache_entries": cache.get_seq_length() - new_tokens, "cache_mib": size / 2**20,
            "prefill_s": prefill_s, "decode_s": decode_s, "ms_per_token": 1000 * decode_s / new_tokens,
            "end_to_end_s": prefill_s + decode_s}


def cpu_ticks(stat: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from the text of ``/proc/stat``."""
    fields = [int(v) for v in stat.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(seconds: float = 1.0) -> float | None:
    """How many cores other work keeps busy, measured while this process sleeps ``seconds``: a timing
    taken beside other jobs is slower by an amount nobody can correct for, so each timing records
    this. None where ``/proc/stat`` does not exist (not Linux)."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return None
    busy0, total0 = cpu_ticks(stat.read_text())
    time.sleep(seconds)
    busy1, total1 = cpu_ticks(stat.read_text())
    return (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)
