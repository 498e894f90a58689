"""The evaluation harness: any ``embed(texts) -> array`` scored by mteb 2.x on our local tasks.

mteb computes the metrics (so our numbers mean what everyone's NDCG@10 means); we supply the data
as custom tasks built from local splits, because mteb's built-in tasks download their data. Three
pitfalls are handled here: a custom encoder needs its own ``ModelMeta`` (or mteb swaps in a
placeholder), the result cache is off (``cache=None``, or a reused name returns stale numbers), and
BM25 runs through mteb's own ``bm25s`` search model so lexical and dense baselines share one scorer.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .data import RetrievalSet, STSSet

EmbedFn = Callable[[list[str]], np.ndarray]
RETRIEVAL_METRICS = {"ndcg_at_10": "NDCG@10", "recall_at_10": "R@10", "mrr_at_10": "MRR@10"}
STS_METRIC = {"cosine_spearman": "Spearman"}
BM25 = "bm25"  # pass this instead of an embed function to get mteb's bm25s baseline
SIMILARITIES = ("cosine", "dot", "euclidean")


@dataclass(frozen=True)
class Encoder:
    """An embed function with how to score with it: the similarity used to rank documents, and an
    instruction prepended to queries only (E5-instruct style; documents and STS texts get none)."""

    embed: EmbedFn
    similarity: str = "cosine"
    query_prefix: str = ""

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {self.similarity!r}; choose one of {', '.join(SIMILARITIES)}")

_COMMON = dict(
    reference="https://github.com/embeddings-benchmark/mteb",
    dataset={"path": "local", "revision": "local"},
    category="t2t", eval_splits=["test"], eval_langs=["eng-Latn"], date=("2025-01-01", "2025-01-01"),
    dialect=["Written"], domains=[], task_subtypes=[], license="not specified",
    annotations_creators="derived", modalities=["text"], sample_creation="found", bibtex_citation="",
)


def _task_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", name.title()) or "Task"


def retrieval_task(name: str, data: RetrievalSet):
    """An mteb retrieval task over local queries, corpus and qrels."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    class LocalRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(type="Retrieval", name=f"Local{_task_name(name)}Retrieval",
                                description=f"Isolated {name} retrieval set of Embeddings Meet LLMs.",
                                main_score="ndcg_at_10", **_COMMON)

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            split = RetrievalSplitData(
                queries=Dataset.from_list([{"id": k, "text": v} for k, v in data.queries.items()]),
                corpus=Dataset.from_list([{"id": k, "text": v, "title": ""} for k, v in data.corpus.items()]),
                relevant_docs={q: dict(rel) for q, rel in data.qrels.items()},
                top_ranked=None,
            )
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return LocalRetrieval()


def sts_task(data: STSSet):
    """An mteb STS task over human-scored pairs; scores are normalised by the set's own range."""
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    if len(data) < 2:
        raise ValueError(f"STS set {data.name!r} needs at least two pairs for a correlation")
    scores = [s for _, _, s in data.pairs]

    class LocalSTS(AbsTaskSTS):
        metadata = TaskMetadata(type="STS", name=f"Local{_task_name(data.name)}STS",
                                description=f"{data.name} pairs with human similarity scores.",
                                main_score="cosine_spearman", **_COMMON)
        min_score = min(scores)
        max_score = max(scores)

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = DatasetDict({"test": Dataset.from_dict({
                "sentence1": [a for a, _, _ in data.pairs], "sentence2": [b for _, b, _ in data.pairs],
                "score": scores})})
            self.data_loaded = True

    return LocalSTS()


def mteb_encoder(name: str, encoder: Encoder | EmbedFn, dim: int | None = None):
    """Wrap an :class:`Encoder` (or a bare ``embed(texts) -> (n, d) array``) as an mteb encoder."""
    import torch
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction
    from mteb.types import PromptType

    enc = encoder if isinstance(encoder, Encoder) else Encoder(encoder)

    class FunctionEncoder(AbsEncoder):
        def __init__(self) -> None:
            self.mteb_model_meta = ModelMeta.create_empty(overwrites={
                "name": f"lbr-utils/{_task_name(name)}", "revision": "local",
                "similarity_fn_name": ScoringFunction(enc.similarity), "embed_dim": dim, "framework": ["PyTorch"]})

        def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
            texts = [t for batch in inputs for t in batch["text"]]
            if prompt_type == PromptType.query and enc.query_prefix:
                texts = [enc.query_prefix + t for t in texts]
            out = np.asarray(enc.embed(texts), dtype=np.float32)
            if out.shape[0] != len(texts):
                raise ValueError(f"{name}: embed returned {out.shape[0]} rows for {len(texts)} texts")
            return out

        def similarity(self, a, b):
            if enc.similarity == "euclidean":  # mteb's base class knows cosine and dot only
                return -torch.cdist(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32))
            return super().similarity(a, b)

        def similarity_pairwise(self, a, b):
            if enc.similarity == "euclidean":
                return -torch.linalg.vector_norm(torch.as_tensor(a) - torch.as_tensor(b), dim=-1)
            return super().similarity_pairwise(a, b)

    return FunctionEncoder()


def _bm25_model():
    import mteb

    return mteb.get_model("mteb/baseline-bm25s")


def ndcg_per_query(predictions: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
                   k: int = 10) -> dict[str, float]:
    """NDCG@k of every query from a ranking (document -> score per query) and graded qrels: the
    per-query numbers whose mean is the aggregate, which a paired bootstrap resamples."""
    out = {}
    for qid, relevant in qrels.items():
        ranked = sorted(predictions.get(qid, {}).items(), key=lambda kv: -kv[1])[:k]
        dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, (doc, _) in enumerate(ranked))
        ideal = sum(rel / math.log2(rank + 2) for rank, rel in enumerate(sorted(relevant.values(), reverse=True)[:k]))
        out[qid] = dcg / ideal if ideal > 0 else 0.0
    return out


def ranked_ndcg(embed: EmbedFn, data: RetrievalSet, k: int = 10) -> dict[str, float]:
    """Per-query NDCG@k of a dense embedder by cosine ranking, in-process and without mteb's task
    set-up: fast enough to score a dev set every few training steps. Ranks as the harness does, so
    its mean equals :func:`evaluate_models`' NDCG@10 (tested)."""
    qids, dids = list(data.qrels), list(data.corpus)
    q = embed([data.queries[i] for i in qids])
    d = embed([data.corpus[i] for i in dids])
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    scores = q @ d.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    ranked = {qid: {dids[j]: float(scores[i, j]) for j in top[i]} for i, qid in enumerate(qids)}
    return ndcg_per_query(ranked, data.qrels, k)


def evaluate_models(models: Mapping[str, Encoder | EmbedFn | str], retrieval: Mapping[str, RetrievalSet] | None = None,
                    sts: Sequence[STSSet] = (), show_progress: bool = False, per_query: bool = False) -> pd.DataFrame:
    """Score every model on every task; a tidy table with one row per (model, task, metric).

    ``models`` maps a display name to an :class:`Encoder`, a bare embed function, or :data:`BM25`
    for the lexical baseline (which skips STS, as BM25 scores query/document pairs, not symmetric
    similarity). STS is always scored by cosine, whatever an encoder ranks documents with.
    ``per_query`` adds each query's NDCG@10 (a dict) to every retrieval NDCG@10 row, computed from
    mteb's own rankings, so its mean is mteb's NDCG@10.
    """
    import datasets
    import mteb

    if not models:
        raise ValueError("no models to evaluate")
    retrieval = dict(retrieval or {})
    if not retrieval and not sts:
        raise ValueError("no tasks to evaluate: pass retrieval sets and/or STS sets")
    tasks: list[tuple[str, str, Any]] = [(name, "retrieval", retrieval_task(name, data))
                                         for name, data in retrieval.items()]
    tasks += [(s.name, "sts", sts_task(s)) for s in sts]
    logging.getLogger("mteb").setLevel(logging.ERROR)
    datasets.disable_progress_bars()  # mteb re-formats every task's data: a bar per task is noise
    rows = []
    for model_name, embed in models.items():
        is_bm25 = isinstance(embed, str)
        if is_bm25 and embed != BM25:
            raise ValueError(f"unknown model shortcut {embed!r}; pass an embed function or {BM25!r}")
        model = _bm25_model() if is_bm25 else mteb_encoder(model_name, embed)
        for task_name, kind, task in tasks:
            if is_bm25 and kind == "sts":
                continue
            with tempfile.TemporaryDirectory() as folder:
                keep = per_query and kind == "retrieval"
                result = mteb.evaluate(model, task, cache=None, show_progress_bar=show_progress,
                                       prediction_folder=folder if keep else None)
                if keep:
                    [path] = Path(folder).glob("*_predictions.json")
                    ranked = json.loads(path.read_text())["default"]["test"]
            scores = result.task_results[0].scores["test"][0]
            metrics = RETRIEVAL_METRICS if kind == "retrieval" else STS_METRIC
            for key, label in metrics.items():
                row = {"model": model_name, "task": task_name, "kind": kind, "metric": label, "score": float(scores[key])}
                if keep and label == "NDCG@10":
                    row["per_query"] = ndcg_per_query(ranked, retrieval[task_name].qrels)
                rows.append(row)
    return pd.DataFrame(rows)


def to_wide(table: pd.DataFrame, metrics: Iterable[str] = ("NDCG@10", "Spearman")) -> pd.DataFrame:
    """Models as rows, tasks as columns, one headline metric per task kind (for the book)."""
    sub = table[table.metric.isin(list(metrics))]
    return sub.pivot_table(index="model", columns="task", values="score", sort=False)
