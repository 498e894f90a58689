"""Chapter 4's computation, apart from its presentation: what SmolLM2 writes for one seed's
documents with every check's verdict, the training sets built from it, and one cached cell per
(seed, arm). Its own module so that the chapter's claims and prose can change without invalidating
the runs."""

from __future__ import annotations

import math
import random
import re
from dataclasses import replace

import numpy as np

from ..data import QARecord, load_domain
from ..embedders import LLMEmbedder, SentenceTransformerEmbedder
from ..geometry import dense_scores
from ..models import load_causal_lm
from ..profiles import Profile
from ..runcache import cache_key, cached_json, code_fingerprint
from ..synth import (HFGenerator, bm25_scores, chat_prompt, degenerate, echoes_example, mined_negatives, near_copies,
                     own_ranks)
from ._contrastive_cells import base_recipe, dev_selection, retrieval_row

# Documents that get a synthetic query, per seed: nearly every distinct CL answer at `cpu`. Under half
# the queries passed the checks in development, so 300 documents left arms of some 135 pairs: too few.
N_DOCUMENTS = 600
N_NEGATIVES = 100  # kept queries that also get a written and a mined negative
CUT_WORDS = 6  # words from which a written negative may have been cut short by the writer's token limit
EPOCHS = 5
# In the order the funnel applies them. A query that quotes its document's ICD code finds it by a string
# no human question holds (the evaluation queries never name a code): a shortcut, not a query.
CHECKS = ("empty", "degenerate", "echoes a prompt example", "copies its document", "quotes its document's code",
          "not consistent")
LONGER = "human, twice the epochs"  # as many steps as human + synthetic: the compute-matched reference
ARMS = ("human", "synthetic", "synthetic (unfiltered)", "mix (equal pairs)", "human + synthetic", LONGER)


def _documents(profile: Profile, domain: str, seed: int, n_documents: int) -> list[QARecord]:
    """The first human record of each of the first ``n_documents`` distinct CL answers."""
    first: dict[str, QARecord] = {}
    for r in load_domain(domain, profile, seed).cl:
        first.setdefault(r.answer, r)
    return list(first.values())[:n_documents]


# A code as a card writes it, "(ICD-10-CM E09.4", or its start: a writer cut off by its token limit leaves
# "(ICD-10-CM I6"; a bare "B12" (the vitamin) is no code.
_CODE_LIKE = re.compile(r"ICD|\(\s*[A-Z]\d")
_CARD = re.compile(r"(?P<description>.*) \(ICD-10-CM [^;)]*(?:; (?P<parent>.*))?\)", re.DOTALL)


def _quotes_code(text: str, record: QARecord) -> bool:
    """Does ``text`` name its record's entity (a medical card's ICD-10-CM code), whole or cut short?"""
    return record.entity.lower() in text.lower() or bool(_CODE_LIKE.search(text))


def _card_texts(answer: str) -> list[str]:
    """A medical card and its parts: the code's description and its parent's. A query that copies
    either part is a copy, though diluted in the whole card it would stay under the Jaccard threshold."""
    m = _CARD.fullmatch(answer)
    return [answer] + ([m["description"]] + ([m["parent"]] if m["parent"] else []) if m else [])


def _copies(texts: list[str], records: list[QARecord]) -> list[bool]:
    """Is each text a near copy of its record's card or of a part of it?"""
    return [any(near_copies([t] * len(parts), parts)) for t, parts in zip(texts, (_card_texts(r.answer) for r in records))]


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
    copies = _copies(queries, docs)
    rows = [{"id": d.id, "entity": d.entity, "group": d.group, "document": d.answer, "human question": d.question,
             "query": q, "empty": not q, "degenerate": bool(q) and degenerate(q),
             "echoes a prompt example": echoes_example(q, d.answer), "copies its document": c,
             "quotes its document's code": _quotes_code(q, d), "not consistent": bool(r != 1), "MiniLM rank": int(r),
             "BM25 rank": int(b)} for d, q, c, r, b in zip(docs, queries, copies, dense, lexical)]
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
        # a long generation may be cut by the token limit in mid-word: its last word is left out of the
        # containment test (a short sibling name keeps all its words)
        whole = [" ".join(w.split()[:-1]) if len(w.split()) >= CUT_WORDS else w for w in written]
        copied = [c or _quotes_code(w, row) for c, w, row in
                  zip(near_copies(whole, texts["positive"], contained=True), written, synthetic)]
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
    # Dev scored eight times a run; the arm is read at its best dev point (:func:`dev_selection`).
    cfg = replace(base_recipe(profile, seed), steps=steps, eval_every=max(1, math.ceil(steps / 8)))
    with dev_selection(model, tok, records, cfg, splits.dev, show_progress=True) as (result, select):
        embedder, step = select(None)
    embedder = embedder.replace(bf16=True, max_length=profile.max_length)
    return {"retrieval": [retrieval_row(name, embedder.embed, splits.eval) | {"steps": step}],
            "training": [{"model": name, "pairs": len(records), "epochs": epochs, **result.summary(),
                          "selected step": step}]}


def trained(profile: Profile, domain: str, seed: int, name: str, records: list[QARecord],
            epochs: int = EPOCHS) -> dict[str, list]:
    """One arm on one seed, trained ``epochs`` times over ``records`` and scored per query (cached)."""
    pairs = [(r.question, r.answer) for r in records]
    key = cache_key(code_fingerprint(__name__), part="train", profile=profile.to_dict(), domain=domain, seed=seed,
                    name=name, pairs=pairs, epochs=epochs)
    return cached_json("ch04_cells", key, lambda: _train(profile, domain, seed, name, records, epochs))
