"""The baseline table: BM25, all-MiniLM-L6-v2 and SmolLM2 with mean pooling on every task.

This is the yardstick every later chapter is read against: what a lexical matcher, a small
sentence encoder trained for similarity, and an untouched causal LM score on our domain retrieval
sets and human-scored STS sets.
"""

from __future__ import annotations

import pandas as pd

from ..data import DOMAINS, STS_NAMES, load_domain, load_sts
from ..embedders import LLMEmbedder, SentenceTransformerEmbedder
from ..evaluate import BM25, evaluate_models
from ..models import load_causal_lm
from ..profiles import get_profile
from ..results import save_results, timer

NAME = __name__.rpartition(".")[2]
TITLE = "Baselines (chapter 1)"


def run(profile_name: str, seed: int = 0, domains: tuple[str, ...] = tuple(DOMAINS),
        show_progress: bool = True) -> pd.DataFrame:
    """Evaluate the three baselines on every domain and STS set; write ``results/<profile>/ch01_baselines.json``."""
    profile = get_profile(profile_name)
    with timer() as t:
        retrieval = {d: load_domain(d, profile, seed).eval for d in domains}
        sts = [load_sts(name, profile.n_sts, seed) for name in STS_NAMES]
        model, tok = load_causal_lm(profile.model)
        models = {
            "BM25": BM25,
            "all-MiniLM-L6-v2": SentenceTransformerEmbedder(),
            f"{profile.model} (mean)": LLMEmbedder(model, tok, pooling="mean", batch_size=profile.embed_batch_size,
                                                   max_length=profile.max_length, bf16=True,
                                                   show_progress=show_progress),
        }
        table = evaluate_models(models, retrieval, sts)
    config = {"profile": profile.to_dict(), "domains": list(domains), "sts": list(STS_NAMES),
              "sizes": {d: {"queries": len(r.queries), "corpus": len(r.corpus)} for d, r in retrieval.items()},
              "llm_embedder": {"pooling": "mean", "layer": -1, "bf16_autocast": True}}
    save_results(NAME, profile_name, table.to_dict(orient="records"), config, [seed], t["seconds"])
    return table


def claims(records: dict[str, dict]) -> dict:
    """Chapter 1 judges no claim: it is the yardstick that chapters 3 and 5b compare against."""
    return {}
