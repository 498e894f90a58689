"""Chapter 4's experiment: can SmolLM2 write its own contrastive training data?

SmolLM2-135M-Instruct writes a query for each of ``n_documents`` CL answers (doc2query). Each query
passes four checks before it is used: it is not empty, not a degenerate repetition, not a copy of its
document, and MiniLM ranks its document first among all CL answers (the consistency filter). For a
share of the kept queries it also writes a sibling negative (flagged when it is the positive again)
and BM25 mines one. Chapter 3's base recipe then trains on the same documents with human questions,
synthetic queries, unfiltered synthetic queries, a half/half mix, and human plus synthetic: every arm
for the same number of epochs, so the arms of equal size also get equal steps. Each (seed, arm) is a
cached cell: an interrupted run resumes.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pandas as pd

from ..contrastive import train_contrastive
from ..data import QARecord, load_domain
from ..embedders import LLMEmbedder, SentenceTransformerEmbedder
from ..models import load_causal_lm
from ..profiles import Profile, get_profile, lbr_profile
from ..results import load_tables, save_results, timer
from ..runcache import cache_key, cached_json, code_fingerprint
from ..stats import claim_family, display_claims, judged_claim, late_models, per_query_differences, unconverged
from ..synth import (HFGenerator, bm25_scores, chat_prompt, degenerate, dense_scores, mined_negatives, near_copies,
                     own_ranks)
from .ch03_contrastive import base_recipe, retrieval_row

NAME = __name__.rpartition(".")[2]
TITLE = "LLM-synthesised training data (chapter 4)"
N_DOCUMENTS = 400  # documents that get a synthetic query, per seed
N_NEGATIVES = 100  # kept queries that also get a written and a mined negative
EPOCHS = 5
MARGIN = 0.02  # "rivals": at most 2 NDCG@10 points worse
CHECKS = ("empty", "degenerate", "copies its document", "not consistent")
ARMS = ("human", "synthetic", "synthetic (unfiltered)", "mix (equal pairs)", "human + synthetic")


def _documents(profile: Profile, domain: str, seed: int, n_documents: int) -> list[QARecord]:
    """The first human record of each of the first ``n_documents`` distinct CL answers."""
    first: dict[str, QARecord] = {}
    for r in load_domain(domain, profile, seed).cl:
        first.setdefault(r.answer, r)
    return list(first.values())[:n_documents]


def _synthesise(profile: Profile, domain: str, seed: int, n_documents: int) -> dict[str, list]:
    splits = load_domain(domain, profile, seed)
    pool = list(dict.fromkeys(r.answer for r in splits.cl))  # every CL answer: the filter's candidates
    docs = _documents(profile, domain, seed, n_documents)
    model, tok = load_causal_lm(profile.model)
    gen = HFGenerator(model, tok, bf16=True, show_progress=True)
    queries = gen.generate([chat_prompt("query", d.answer) for d in docs])
    minilm = SentenceTransformerEmbedder(max_length=profile.max_length)
    own = range(len(docs))  # docs are the pool's first answers, in order
    dense = own_ranks(dense_scores(minilm.embed, [q or " " for q in queries], pool), own)
    lexical = own_ranks(bm25_scores(queries, pool), own)
    copies = near_copies(queries, [d.answer for d in docs])
    rows = [{"id": d.id, "entity": d.entity, "group": d.group, "document": d.answer, "human question": d.question,
             "query": q, "empty": not q, "degenerate": bool(q) and degenerate(q), "copies its document": c,
             "not consistent": bool(r != 1), "MiniLM rank": int(r), "BM25 rank": int(b)}
            for d, q, c, r, b in zip(docs, queries, copies, dense, lexical)]
    for row in rows:
        row["kept"] = not any(row[check] for check in CHECKS)

    # Negatives for the first kept queries: one the model writes, one BM25 mines, one at random.
    kept = [row for row in rows if row["kept"]][:N_NEGATIVES]
    negatives = []
    if kept:
        written = gen.generate([chat_prompt("negative", row["document"]) for row in kept])
        synthetic = [QARecord(id=row["id"], domain=domain, question=row["query"], answer=row["document"],
                              entity=row["entity"], group=row["group"]) for row in kept]
        mined = mined_negatives(synthetic, splits.cl)
        rng = random.Random(seed)
        others = [[a for a in pool if a != row["document"]] for row in kept]
        randoms = [rng.choice(o) for o in others]
        texts = {"positive": [row["document"] for row in kept], "written negative": written,
                 "mined negative": mined, "random negative": randoms}
        q = minilm.embed([row["query"] for row in kept])
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        cosines = {}
        for kind, t in texts.items():
            v = minilm.embed([x or " " for x in t])
            cosines[kind] = np.sum(q * v / np.linalg.norm(v, axis=1, keepdims=True), axis=1)
        copied = near_copies(written, texts["positive"])
        negatives = [{"query": row["query"], "positive": row["document"], "written negative": w,
                      "near-copy of the positive": c, "mined negative": m,
                      **{f"cos(query, {kind})": float(cosines[kind][i]) for kind in texts}}
                     for i, (row, w, c, m) in enumerate(zip(kept, written, copied, mined))]
    stats = gen.stats
    generation = [{"prompts": stats["prompts"], "new_tokens": stats["new_tokens"], "seconds": stats["seconds"],
                   "tokens_per_s": stats["new_tokens"] / max(stats["seconds"], 1e-9)}]
    return {"queries": rows, "negatives": negatives, "generation": generation}


def synthesised(profile: Profile, domain: str, seed: int, n_documents: int) -> dict[str, list]:
    """What SmolLM2 wrote for one seed's documents, with every check's verdict (a cached cell)."""
    key = cache_key(code_fingerprint(__name__), part="synthesise", profile=profile.to_dict(), domain=domain,
                    seed=seed, n_documents=n_documents)
    return cached_json("ch04_cells", key, lambda: _synthesise(profile, domain, seed, n_documents))


def datasets(queries: list[dict], domain: str, seed: int) -> dict[str, list[QARecord]]:
    """The training sets, all on the documents whose synthetic query was kept (``K`` of them): their
    human questions, their synthetic queries, ``K`` unfiltered queries (any non-empty one, drawn from
    all documents), half human / half synthetic, and both (``2K`` pairs)."""
    def record(row: dict, question: str, suffix: str) -> QARecord:
        return QARecord(id=row["id"] + suffix, domain=domain, question=question, answer=row["document"],
                        entity=row["entity"], group=row["group"])

    kept = [row for row in queries if row["kept"]]
    rng = random.Random(seed)
    written = [row for row in queries if not row["empty"]]
    unfiltered = rng.sample(written, len(kept))
    halves = rng.sample(kept, len(kept))
    human = [record(row, row["human question"], "") for row in kept]
    synthetic = [record(row, row["query"], "-synq") for row in kept]
    mid = len(kept) // 2
    return {"human": human, "synthetic": synthetic,
            "synthetic (unfiltered)": [record(row, row["query"], "-synq") for row in unfiltered],
            "mix (equal pairs)": ([record(row, row["human question"], "") for row in halves[:mid]]
                                  + [record(row, row["query"], "-synq") for row in halves[mid:]]),
            "human + synthetic": human + synthetic}


def _train(profile: Profile, domain: str, seed: int, name: str, records: list[QARecord],
           epochs: int) -> dict[str, list]:
    splits = load_domain(domain, profile, seed)
    model, tok = load_causal_lm(profile.model)
    if not records:  # the untrained model: the floor every arm starts from
        embed = LLMEmbedder(model, tok, pooling="mean", max_length=profile.max_length, bf16=True).embed
        return {"retrieval": [retrieval_row(name, embed, splits.eval)]}
    steps = max(1, math.ceil(epochs * len(records) / profile.batch_size))
    cfg = replace(base_recipe(profile, seed), steps=steps, eval_every=max(1, steps // 4))
    embedder, result = train_contrastive(model, tok, records, cfg, show_progress=True, dev=splits.dev)
    embedder = embedder.replace(bf16=True, max_length=profile.max_length)
    return {"retrieval": [retrieval_row(name, embedder.embed, splits.eval)],
            "training": [{"model": name, "pairs": len(records), "epochs": epochs, **result.summary()}]}


def trained(profile: Profile, domain: str, seed: int, name: str, records: list[QARecord],
            epochs: int = EPOCHS) -> dict[str, list]:
    """One arm on one seed, trained ``epochs`` times over ``records`` and scored per query (cached)."""
    pairs = [(r.question, r.answer) for r in records]
    key = cache_key(code_fingerprint(__name__), part="train", profile=profile.to_dict(), domain=domain, seed=seed,
                    name=name, pairs=pairs, epochs=epochs)
    return cached_json("ch04_cells", key, lambda: _train(profile, domain, seed, name, records, epochs))


def run(profile_name: str, domain: str = "medical", seeds: tuple[int, ...] | None = None,
        n_documents: int | None = None) -> dict[str, pd.DataFrame]:
    """Synthesise, check and train every arm on every seed (from the cell cache where it can)."""
    profile = lbr_profile(get_profile(profile_name))
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    n_documents = n_documents or min(N_DOCUMENTS, profile.n_cl)
    out: dict[str, list] = {}

    def add(tables: dict[str, list], seed: int) -> None:
        for table, rows in tables.items():
            out.setdefault(table, []).extend(dict(row, seed=seed) for row in rows)

    with timer() as t:
        for seed in seeds:
            synth = synthesised(profile, domain, seed, n_documents)
            add(synth, seed)
            sets = datasets(synth["queries"], domain, seed)
            add({"sizes": [{"dataset": k, "pairs": len(v)} for k, v in sets.items()]}, seed)
            add(trained(profile, domain, seed, "before training", []), seed)
            for name, records in sets.items():
                if len(records) >= 2:  # a contrastive batch needs two pairs
                    add(trained(profile, domain, seed, name, records), seed)
    config = {"profile": profile.to_dict(), "domain": domain, "n_documents": n_documents,
              "n_negatives": N_NEGATIVES, "epochs": EPOCHS, "recipe": base_recipe(profile, seeds[0]).to_dict(),
              "generator": {"model": profile.model, "greedy": True, "bf16": True},
              "filter_embedder": "all-MiniLM-L6-v2", "margin": MARGIN,
              "compute_seconds": sum(r["seconds"] for r in out.get("training", []))}
    save_results(NAME, profile_name, out, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in out.items()}


STEP_NAMES = {"empty": "not empty", "degenerate": "not degenerate", "copies its document": "not a copy of its document",
              "not consistent": "consistent (kept)"}


def funnel(queries: pd.DataFrame) -> pd.DataFrame:
    """How many queries are left after each check in turn (one column per seed), and the mean share
    of the written queries left."""
    left = pd.Series(True, index=queries.index)
    steps = {"written": left.groupby(queries.seed).sum()}
    for check in CHECKS:
        left = left & ~queries[check].astype(bool)
        steps[STEP_NAMES[check]] = left.groupby(queries.seed).sum()
    table = pd.DataFrame(steps).T
    return table.assign(**{"share of written": table.mean(axis=1) / table.iloc[0].mean()})


def survey_claims(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The survey's and InPars/Promptagator's claims about synthetic pairs, judged per query over the
    seeds, one Holm family; an arm whose dev curve had not flattened is not judged."""
    retrieval = tables["retrieval"]
    late = late_models(tables["training"]) if "training" in tables else set()

    def claim(text: str, a: str, b: str, source: str, margin: float = 0.0) -> dict:
        return unconverged(judged_claim(text, per_query_differences(retrieval, a, b), +1, margin=margin,
                                        source=source, a=a, b=b), late)

    return claim_family([
        claim(f"LLM-synthesised pairs rival human pairs (at most {100 * MARGIN:.0f} points worse; same documents, "
              "epochs and steps)", "synthetic", "human", "survey §3", MARGIN),
        claim("LLM-synthesised pairs added to human pairs improve the embedder (same documents and epochs)",
              "human + synthetic", "human", "survey §3"),
        claim("the consistency filter makes synthetic pairs better (equal pairs and epochs)", "synthetic",
              "synthetic (unfiltered)", "InPars; Promptagator"),
        claim("half human, half synthetic beats human pairs alone at equal pairs", "mix (equal pairs)", "human",
              "survey §3")])


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    tables = load_tables(records[NAME])
    if "per_query" not in tables["retrieval"]:  # a results file from before per-query scores
        return {}
    return {"survey": display_claims(survey_claims(tables))}
