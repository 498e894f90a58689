"""Chapter 2's experiment: how many ways are there to read an embedding out of a causal LM?

Every variant reuses one loaded model; only the input format, the pooled tokens, the layer and the
attention mask change. Each variant is scored by the same harness as the baselines.
"""

from __future__ import annotations

import pandas as pd

from ..data import DOMAINS, STS_NAMES, load_domain, load_sts
from ..embedders import LLMEmbedder
from ..evaluate import Encoder, evaluate_models
from ..geometry import anisotropy, center, top1_agreement
from ..models import load_causal_lm
from ..profiles import get_profile
from ..results import save_results, score_of, timer
from ..stats import survey_claim

NAME = __name__.rpartition(".")[2]
TITLE = "LLMs as embedders (chapter 2)"
QUERY_INSTRUCTION = "Instruct: Given a name or a question, retrieve the passage that answers it\nQuery: "


def variants(num_layers: int) -> dict[str, dict]:
    """Variant name -> LLMEmbedder keyword arguments."""
    out = {name: {"pooling": name} for name in ("first", "mean", "last", "weighted_mean", "prompteol", "echo")}
    out |= {f"{p} (bidirectional)": {"pooling": p, "causal": False} for p in ("mean", "last")}
    out |= {f"mean (layer {l})": {"pooling": "mean", "layer": l} for l in (num_layers // 4, num_layers // 2, 3 * num_layers // 4)}
    return out


def run(profile_name: str, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Score every variant on every task, plus the instruction, similarity and anisotropy studies."""
    profile = get_profile(profile_name)
    with timer() as t:
        retrieval = {d: load_domain(d, profile, seed).eval for d in DOMAINS}
        sts = [load_sts(name, profile.n_sts, seed) for name in STS_NAMES]
        model, tok = load_causal_lm(profile.model)
        embedders = {name: LLMEmbedder(model, tok, batch_size=profile.embed_batch_size, max_length=profile.max_length,
                                       bf16=True, **kw) for name, kw in variants(model.config.num_hidden_layers).items()}
        main = evaluate_models(embedders, retrieval, sts)

        instruct = evaluate_models({f"{p} + query instruction": Encoder(embedders[p], query_prefix=QUERY_INSTRUCTION)
                                    for p in ("mean", "last", "weighted_mean")}, retrieval)
        similarity = evaluate_models({f"mean, {s}": Encoder(embedders["mean"], similarity=s)
                                      for s in ("cosine", "dot", "euclidean")}, retrieval)

        corpus = [text for r in retrieval.values() for text in r.corpus.values()]
        geometry = pd.DataFrame([{"variant": name, "anisotropy": anisotropy(e.embed(corpus), seed=seed),
                                  "anisotropy (centred)": anisotropy(center(e.embed(corpus)), seed=seed)}
                                 for name, e in embedders.items()])
        agreement = pd.DataFrame([{"domain": d, **top1_agreement(embedders["mean"].embed(list(r.queries.values())),
                                                                 embedders["mean"].embed(list(r.corpus.values())))}
                                  for d, r in retrieval.items()])
    tables = {"main": main, "instruction": instruct, "similarity": similarity, "geometry": geometry,
              "agreement": agreement}
    config = {"profile": profile.to_dict(), "variants": variants(model.config.num_hidden_layers),
              "query_instruction": QUERY_INSTRUCTION, "bf16_autocast": True}
    save_results(NAME, profile_name, tables, config, [seed], t["seconds"])
    return tables


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """The survey's claim that bidirectional attention reads text better, judged per domain."""
    if NAME not in records:
        return {}
    main = records[NAME]["metrics"]["main"]
    domains = sorted({r["task"] for r in main if r["kind"] == "retrieval"})
    diffs = [score_of(main, "mean (bidirectional)", d) - score_of(main, "mean", d) for d in domains]
    return {"survey": pd.DataFrame([survey_claim(
        "bidirectional attention reads text better than causal (untrained, mean pooling)", "survey §4",
        "NDCG@10, per domain (chapter 2)", diffs, +1)])}
