"""Chapter 4's experiment: can SmolLM2 write its own contrastive training data?

SmolLM2-135M-Instruct writes a query for every CL answer (doc2query), a paraphrase of human
questions, and look-alike negatives; MiniLM's ranking filters the queries for consistency. The same
contrastive recipe as chapter 3 then trains on human pairs, synthetic pairs, and both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..contrastive import ContrastiveConfig, train_contrastive
from ..data import load_domain
from ..embedders import SentenceTransformerEmbedder
from ..evaluate import evaluate_models
from ..models import load_causal_lm
from ..profiles import get_profile
from ..results import save_results, timer
from ..stats import survey_claim
from ..synth import HFGenerator, consistency_filter, synthesise_negatives, synthesise_paraphrases, synthesise_queries

NAME = __name__.rpartition(".")[2]
TITLE = "LLM-synthesised training data (chapter 4)"


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def run(profile_name: str, domain: str = "medical", seed: int = 0, n_documents: int | None = None,
                    ) -> dict[str, pd.DataFrame]:
    """Synthesise queries for ``n_documents`` CL records (default: half of them; the rest of the
    generation budget goes to paraphrases and negatives for a third as many), filter, train, score."""
    profile = get_profile(profile_name)
    splits = load_domain(domain, profile, seed)
    human = splits.cl
    n_documents = n_documents or max(2, len(human) // 2)
    n_paraphrase = max(2, n_documents // 3)
    with timer() as t:
        model, tok = load_causal_lm(profile.model)
        gen = HFGenerator(model, tok, bf16=True)
        queries = synthesise_queries(gen, human[:n_documents])
        paraphrases = synthesise_paraphrases(gen, human[:n_paraphrase])
        negatives = synthesise_negatives(gen, human[:n_paraphrase])
        minilm = SentenceTransformerEmbedder()
        pool = [r.answer for r in human]
        kept = consistency_filter(minilm.embed, queries + paraphrases, pool)

        # Are the synthetic negatives harder than a random in-batch negative? (MiniLM cosine to the question)
        sub = human[:n_paraphrase]
        qv = minilm.embed([r.question for r in sub])
        shifted = [sub[(i + 1) % len(sub)].answer for i in range(len(sub))]
        hardness = {"cos(question, positive)": float(_cos(qv, minilm.embed([r.answer for r in sub])).mean()),
                    "cos(question, synthetic negative)": float(_cos(qv, minilm.embed(negatives)).mean()),
                    "cos(question, random negative)": float(_cos(qv, minilm.embed(shifted)).mean())}

        cfg = ContrastiveConfig(steps=profile.train_steps, batch_size=profile.batch_size,
                                max_length=min(64, profile.max_length), seed=seed)
        datasets = {"human": human, "synthetic (filtered)": kept, "human + synthetic": human + kept}
        rows = []
        for name, records in datasets.items():
            if len(records) < 2:
                continue
            m, tk = load_causal_lm(profile.model)
            embedder, _ = train_contrastive(m, tk, records, cfg, show_progress=False)
            embedder = embedder.replace(bf16=True, max_length=profile.max_length)
            rows += evaluate_models({name: embedder}, {domain: splits.eval}).to_dict(orient="records")

    stats = gen.stats
    source = {r.id: r for r in human}
    generation = pd.DataFrame([{
        "prompts": stats["prompts"], "new_tokens": stats["new_tokens"], "seconds": stats["seconds"],
        "tokens_per_s": stats["new_tokens"] / max(stats["seconds"], 1e-9),
        "synthetic_pairs": len(queries) + len(paraphrases), "kept_by_filter": len(kept),
        "kept_share": len(kept) / max(1, len(queries) + len(paraphrases))}])
    examples = pd.DataFrame(
        [{"kind": "query", "source": r.answer, "generated": r.question, "kept": r in kept} for r in queries[:8]]
        + [{"kind": "paraphrase", "source": source[p.id.removesuffix("-para")].question, "generated": p.question,
            "kept": p in kept} for p in paraphrases[:6]]
        + [{"kind": "negative", "source": h.answer, "generated": n, "kept": None} for h, n in zip(sub, negatives[:6])])
    tables = {"retrieval": pd.DataFrame(rows), "generation": generation, "examples": examples,
              "hardness": pd.DataFrame([hardness]),
              "sizes": pd.DataFrame([{"dataset": k, "pairs": len(v)} for k, v in datasets.items()])}
    config = {"profile": profile.to_dict(), "domain": domain, "recipe": cfg.to_dict(), "n_documents": n_documents,
              "n_paraphrase": n_paraphrase,
              "generator": {"model": profile.model, "max_new_tokens": gen.max_new_tokens, "greedy": not gen.do_sample,
                            "bf16": gen.bf16},
              "filter_embedder": "all-MiniLM-L6-v2"}
    save_results(NAME, profile_name, tables, config, [seed], t["seconds"])
    return tables


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """The survey's claims about LLM-synthesised pairs, on the chapter's domain."""
    if NAME not in records:
        return {}
    score = {r["model"]: r["score"] for r in records[NAME]["metrics"]["retrieval"] if r["metric"] == "NDCG@10"}
    return {"survey": pd.DataFrame([
        survey_claim("LLM-synthesised pairs added to human pairs improve the embedder", "survey §3",
                     "NDCG@10, medical (chapter 4)", [score["human + synthetic"] - score["human"]], +1),
        survey_claim("LLM-synthesised pairs alone rival human pairs", "survey §3",
                     "NDCG@10, medical (chapter 4)", [score["synthetic (filtered)"] - score["human"]], +1)])}
