"""Chapter 6's decoding timings, apart from its quality runs: the time to prefill a long passage and
decode an answer, full and compressed, several times, as one cached cell. Their own module so that a
timing can be retaken (on an idle machine) without invalidating the trained compressors."""

from __future__ import annotations

import os

import torch

from ..costs import busy_cores, decoding_cost
from ..data import load_domain
from ..models import add_bottleneck_tokens, load_causal_lm
from ..profiles import Profile
from ..runcache import cache_key, cached_json, code_fingerprint
from ._compression_plan import CLAIM_RATIO, DOMAIN

REPEATS = 5  # timings per (passage length, reading)


def timing_plan(profile: Profile) -> tuple[tuple[int, ...], int]:
    """Passage lengths to time (2, 8 and 16 times the profile's text length: 256-2048 tokens at
    `cpu`) and the answer length (half the text length: 64 tokens at `cpu`, a couple of sentences)."""
    return tuple(f * profile.max_length for f in (2, 8, 16)), profile.max_length // 2


def _timing(profile: Profile) -> dict[str, list]:
    lengths, answer = timing_plan(profile)
    model, tok = load_causal_lm(profile.model)
    add_bottleneck_tokens(model, tok, max(lengths) // int(CLAIM_RATIO) + 1)
    splits = load_domain(DOMAIN, profile, 0)
    long_text = " ".join(r.answer for r in splits.eval_records + splits.gl + splits.cl)
    ids = tok(long_text, add_special_tokens=False)["input_ids"]
    if len(ids) < max(lengths):
        raise ValueError(f"the domain's text holds {len(ids)} tokens, fewer than {max(lengths)}")
    rows = []
    for n in lengths:
        passage = tok.decode(ids[:n])
        for ratio in (None, CLAIM_RATIO):  # warm up the kernels of both readings at this length
            decoding_cost(model, tok, passage, ratio, new_tokens=2)
        for repeat in range(REPEATS):
            # Alternate which reading goes first, so neither always runs on a cache the other warmed.
            for ratio in ((None, CLAIM_RATIO) if repeat % 2 == 0 else (CLAIM_RATIO, None)):
                rows.append({"reading": "full" if ratio is None else f"compressed (r={CLAIM_RATIO:g})",
                             "repeat": repeat, "answer_tokens": answer, "load_average": os.getloadavg()[0],
                             "busy_cores": busy_cores(), "threads": torch.get_num_threads(),
                             **decoding_cost(model, tok, passage, ratio, new_tokens=answer)})
    return {"decoding": rows}


def timing_cell(profile: Profile) -> dict[str, list]:
    key = cache_key(code_fingerprint(__name__), part="timing", profile=profile.to_dict())
    return cached_json("ch06_cells", key, lambda: _timing(profile))
