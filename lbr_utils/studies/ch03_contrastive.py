"""Chapter 3's experiment: what each ingredient of contrastive fine-tuning buys on one domain.

Every run starts from the same SmolLM2 weights and the same CL split, changes one thing from the
base recipe (LoRA, in-batch negatives, temperature 0.05, mean pooling), trains until its dev curve
has flattened, and is scored per query on the isolated evaluation set, on every seed. The runs use
the LBR chapters' scale (batch, text length, steps), so the base recipe here is the contrastive stage
that chapter 5 builds on. Each (recipe, seed) is a cached cell: the chapter can run in parts.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..contrastive import ContrastiveConfig, train_contrastive, truncated
from ..data import load_domain
from ..embedders import LLMEmbedder, SentenceTransformerEmbedder
from ..evaluate import ranked_ndcg
from ..models import load_causal_lm
from ..profiles import Profile, get_profile, lbr_profile
from ..results import load_tables, save_results, timer
from ..runcache import cache_key, cached_json, code_fingerprint
from ..stats import claim_family, display_claims, judged_claim, late_models, per_query_differences, unconverged

NAME = __name__.rpartition(".")[2]
TITLE = "Contrastive learning (chapter 3)"
BASE = "in-batch, t=0.05 (base)"
MATRYOSHKA_DIMS = (576, 288, 144, 72, 36)
ANISOTROPY_PAIRS = 2000


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


def base_recipe(profile: Profile, seed: int) -> ContrastiveConfig:
    """LoRA, in-batch negatives, t = 0.05, mean pooling, at the profile's (LBR) scale; the dev set is
    scored four times a run, so the chapter shows where each curve flattens."""
    return ContrastiveConfig(steps=profile.train_steps, batch_size=profile.batch_size, max_length=profile.max_length,
                             seed=seed, eval_every=max(1, profile.train_steps // 4))


def pair_cosines(vectors: np.ndarray, n_pairs: int = ANISOTROPY_PAIRS, seed: int = 0) -> np.ndarray:
    """Cosines of random pairs of distinct rows, the pairs of :func:`lbr_utils.geometry.anisotropy`
    (whose value is their mean): kept one by one so a difference in anisotropy gets a CI."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n
    u = np.asarray(vectors, dtype=np.float64)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    return np.sum(u[i] * u[j], axis=1)


def retrieval_row(name: str, embed, eval_set) -> dict:
    """One model's NDCG@10 on an evaluation set: the mean, and every query's score in the set's order
    (what a paired claim needs)."""
    per_query = ranked_ndcg(embed, eval_set)
    scores = [per_query[q] for q in eval_set.qrels]
    return {"model": name, "metric": "NDCG@10", "score": float(np.mean(scores)), "per_query": scores}


def _scored(name: str, embed, splits, seed: int) -> dict[str, list]:
    corpus = list(splits.eval.corpus.values())
    return {"retrieval": [retrieval_row(name, embed, splits.eval)],
            "geometry": [{"model": name, "pair_cosines": pair_cosines(embed(corpus), seed=seed).tolist()}]}


def _cell(profile: Profile, domain: str, seed: int, name: str, cfg: ContrastiveConfig | None) -> dict[str, list]:
    """One model of the chapter: the base LLM (``cfg`` None), a trained recipe, or MiniLM."""
    splits = load_domain(domain, profile, seed)
    if name == "all-MiniLM-L6-v2":
        return _scored(name, SentenceTransformerEmbedder(max_length=profile.max_length).embed, splits, seed)
    model, tok = load_causal_lm(profile.model)
    if cfg is None:
        return _scored(name, LLMEmbedder(model, tok, pooling="mean", max_length=profile.max_length, bf16=True).embed,
                       splits, seed)
    embedder, result = train_contrastive(model, tok, splits.cl, cfg, show_progress=False, dev=splits.dev)
    embedder = embedder.replace(bf16=True, max_length=profile.max_length)
    out = _scored(name, embedder.embed, splits, seed) | {"training": [{"model": name, **result.summary()}]}
    if cfg.matryoshka_dims or name == BASE:
        out["matryoshka"] = []
        for d in MATRYOSHKA_DIMS:
            per_query = ranked_ndcg(truncated(embedder, d), splits.eval)
            out["matryoshka"].append({"model": name, "dim": d, "per_query": [per_query[q] for q in splits.eval.qrels]})
    return out


def cell(profile: Profile, domain: str, seed: int, name: str, cfg: ContrastiveConfig | None) -> dict[str, list]:
    key = cache_key(code_fingerprint(__name__), profile=profile.to_dict(), domain=domain, seed=seed, name=name,
                    cfg=cfg.to_dict() if cfg else None)
    return cached_json("ch03_cells", key, lambda: _cell(profile, domain, seed, name, cfg))


def run(profile_name: str, domain: str = "medical", seeds: tuple[int, ...] | None = None) -> dict[str, pd.DataFrame]:
    """Every recipe on every seed (from the cell cache where it holds them)."""
    profile = lbr_profile(get_profile(profile_name))
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    out: dict[str, list] = {}
    with timer() as t:
        for seed in seeds:
            models = {"before training": None, "all-MiniLM-L6-v2": None, **recipes(base_recipe(profile, seed))}
            for name, cfg in models.items():
                for table, rows in cell(profile, domain, seed, name, cfg).items():
                    out.setdefault(table, []).extend(dict(row, seed=seed, domain=domain) for row in rows)
    base = base_recipe(profile, seeds[0])
    config = {"profile": profile.to_dict(), "domain": domain, "recipes": {k: v.to_dict() for k, v in recipes(base).items()},
              "matryoshka_dims": MATRYOSHKA_DIMS,
              "compute_seconds": sum(r["seconds"] for r in out.get("training", []))}
    save_results(NAME, profile_name, out, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in out.items()}


def survey_claims(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The survey's and the practice article's claims about contrastive fine-tuning, judged per query
    (per random pair for anisotropy) over the seeds, one Holm family; a claim about a recipe whose dev
    curve had not flattened is not judged."""
    retrieval, geometry = tables["retrieval"], tables["geometry"].assign(per_query=lambda g: g.pair_cosines)
    mat = tables["matryoshka"]
    smallest = mat[mat.dim == mat.dim.min()]
    rows = [
        judged_claim("contrastive fine-tuning lowers anisotropy (mean cosine of random pairs)",
                     per_query_differences(geometry, BASE, "before training"), -1, source="survey §4", a=BASE,
                     b="before training"),
        judged_claim("hard negatives improve contrastive learning",
                     per_query_differences(retrieval, "+ hard negatives (filtered)", BASE), +1,
                     source="article; survey §3", a="+ hard negatives (filtered)", b=BASE),
        judged_claim("filtering false negatives out of the hard negatives helps",
                     per_query_differences(retrieval, "+ hard negatives (filtered)", "+ hard negatives (unfiltered)"),
                     +1, source="survey, open question 2", a="+ hard negatives (filtered)",
                     b="+ hard negatives (unfiltered)"),
        judged_claim(f"Matryoshka training keeps more quality when truncated (to {int(mat.dim.min())} dims)",
                     per_query_differences(smallest, "Matryoshka", BASE), +1, source="article", a="Matryoshka", b=BASE),
        judged_claim("a contrastively fine-tuned LLM matches or beats an encoder (all-MiniLM-L6-v2)",
                     per_query_differences(retrieval, BASE, "all-MiniLM-L6-v2"), +1, source="survey §4", a=BASE,
                     b="all-MiniLM-L6-v2")]
    late = late_models(tables["training"]) if "training" in tables else set()
    return claim_family([unconverged(row, late) for row in rows])


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    tables = load_tables(records[NAME])
    if "per_query" not in tables["retrieval"]:  # a results file from before per-query scores
        return {}
    return {"survey": display_claims(survey_claims(tables))}
