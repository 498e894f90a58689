"""Chapter 3's experiment: what each ingredient of contrastive fine-tuning buys on one domain.

Every run starts from the same SmolLM2 weights and the same CL split, changes one thing from the
base recipe (LoRA, in-batch negatives, temperature 0.05), and is scored on the isolated eval set.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from ..contrastive import ContrastiveConfig, train_contrastive, truncated
from ..data import load_domain
from ..embedders import LLMEmbedder
from ..evaluate import evaluate_models
from ..geometry import anisotropy
from ..models import load_causal_lm
from ..profiles import get_profile
from ..results import save_results, score_of, timer
from ..stats import survey_claim
from .ch01_baselines import NAME as BASELINES

NAME = __name__.rpartition(".")[2]
TITLE = "Contrastive learning (chapter 3)"
BASE = "in-batch, t=0.05 (base)"
MATRYOSHKA_DIMS = (576, 288, 144, 72, 36)


def recipes(base: ContrastiveConfig) -> dict[str, ContrastiveConfig]:
    """Run name -> config: the base recipe and one change at a time."""
    return {
        BASE: base,
        "+ hard negatives (filtered)": replace(base, hard_negatives=1),
        "+ hard negatives (unfiltered)": replace(base, hard_negatives=1, filter_false_negatives=False),
        "t=0.02": replace(base, temperature=0.02),
        "t=0.1": replace(base, temperature=0.1),
        "Matryoshka": replace(base, matryoshka_dims=MATRYOSHKA_DIMS),
        "full fine-tuning": replace(base, lora_rank=0, lr=2e-5),
    }


def run(profile_name: str, domain: str = "medical", seed: int = 0) -> dict[str, pd.DataFrame]:
    profile = get_profile(profile_name)
    splits = load_domain(domain, profile, seed)
    corpus = list(splits.eval.corpus.values())
    base = ContrastiveConfig(steps=profile.train_steps, batch_size=profile.batch_size, max_length=min(64, profile.max_length),
                             seed=seed)
    rows, curves, geometry, dims = [], [], [], []
    with timer() as t:
        def score(name: str, embed) -> None:
            table = evaluate_models({name: embed}, {domain: splits.eval})
            rows.extend(table.to_dict(orient="records"))

        model, tok = load_causal_lm(profile.model)
        before = LLMEmbedder(model, tok, pooling="mean", max_length=profile.max_length, bf16=True)
        score("before training", before)
        geometry.append({"model": "before training", "anisotropy": anisotropy(before.embed(corpus), seed=seed)})
        for name, cfg in recipes(base).items():
            model, tok = load_causal_lm(profile.model)
            embedder, result = train_contrastive(model, tok, splits.cl, cfg, show_progress=False)
            embedder = embedder.replace(bf16=True, max_length=profile.max_length)
            score(name, embedder)
            curves += [{"run": name, "step": i + 1, "loss": loss} for i, loss in enumerate(result.losses)]
            geometry.append({"model": name, "anisotropy": anisotropy(embedder.embed(corpus), seed=seed),
                             "train_time_s": result.wall_time_s})
            if name in (BASE, "Matryoshka"):
                for d in MATRYOSHKA_DIMS:
                    table = evaluate_models({name: truncated(embedder, d)}, {domain: splits.eval})
                    dims.append({"run": name, "dim": d, "NDCG@10": float(table[table.metric == "NDCG@10"].score.iloc[0])})
    tables = {"retrieval": pd.DataFrame(rows), "curves": pd.DataFrame(curves), "geometry": pd.DataFrame(geometry),
              "matryoshka": pd.DataFrame(dims)}
    config = {"profile": profile.to_dict(), "domain": domain, "recipes": {k: v.to_dict() for k, v in recipes(base).items()},
              "matryoshka_dims": MATRYOSHKA_DIMS, "sizes": splits.sizes()}
    save_results(NAME, profile_name, tables, config, [seed], t["seconds"])
    return tables


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """The survey's and the practice article's claims about contrastive fine-tuning, on one domain
    (and against chapter 1's all-MiniLM-L6-v2 when its results are there)."""
    if NAME not in records:
        return {}
    m = records[NAME]["metrics"]
    ret = m["retrieval"]
    domain = ret[0]["task"]
    score = {r["model"]: r["score"] for r in ret if r["metric"] == "NDCG@10"}
    aniso = {r["model"]: r["anisotropy"] for r in m["geometry"]}
    smallest = min(r["dim"] for r in m["matryoshka"])
    at = {r["run"]: r["NDCG@10"] for r in m["matryoshka"] if r["dim"] == smallest}
    rows = [
        survey_claim("contrastive fine-tuning lowers anisotropy (mean cosine of random pairs)", "survey §4",
                     f"anisotropy, {domain} corpus (chapter 3)", [aniso[BASE] - aniso["before training"]], -1),
        survey_claim("hard negatives improve contrastive learning", "article; survey §3",
                     f"NDCG@10, {domain} (chapter 3)", [score["+ hard negatives (filtered)"] - score[BASE]], +1),
        survey_claim("filtering false negatives out of the hard negatives helps", "survey, open question 2",
                     f"NDCG@10, {domain} (chapter 3)",
                     [score["+ hard negatives (filtered)"] - score["+ hard negatives (unfiltered)"]], +1),
        survey_claim(f"Matryoshka training keeps more quality when truncated (to {smallest} dims)", "article",
                     f"NDCG@10 at {smallest} dims, {domain} (chapter 3)", [at["Matryoshka"] - at[BASE]], +1)]
    if BASELINES in records:
        minilm = score_of(records[BASELINES]["metrics"], "all-MiniLM-L6-v2", domain)
        rows.append(survey_claim("a contrastively fine-tuned LLM matches or beats an encoder (all-MiniLM-L6-v2)",
                                 "survey §4", f"NDCG@10, {domain}, LoRA base recipe (chapters 1, 3)",
                                 [score[BASE] - minilm], +1))
    return {"survey": pd.DataFrame(rows)}
