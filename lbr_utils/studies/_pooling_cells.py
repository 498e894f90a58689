"""Chapter 2's computation, apart from its presentation: every reading of the untrained LLM, scored
per query on one seed's evaluation set, as one cached cell. Its own module so that the chapter's
claims and prose can change without invalidating the scores, and so that the chapter can run one
seed at a time within a notebook's budget and resume where an interrupted run stopped."""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache

import pandas as pd
import torch

from ..data import DOMAINS, STS_NAMES, load_domain, load_sts
from ..embedders import LLMEmbedder
from ..evaluate import Encoder, evaluate_models
from ..geometry import anisotropy, center, top1_agreement
from ..instruct import InstructedEmbedder
from ..models import decoder, load_causal_lm
from ..profiles import Profile
from ..runcache import cache_key, cached_json, code_fingerprint

QUERY_INSTRUCTION = "Instruct: Given a name or a question, retrieve the passage that answers it\nQuery: "
INSTRUCTED = ("mean", "last", "weighted_mean")
SIMILARITIES = ("cosine", "dot", "euclidean")


def variants(num_layers: int) -> dict[str, dict]:
    """Variant name -> LLMEmbedder keyword arguments; ``first_layers`` (a layer count) reads the last
    state of the model cut after that layer, through the final norm (:func:`first_layers`)."""
    out = {name: {"pooling": name} for name in ("first", "mean", "last", "weighted_mean", "prompteol", "echo")}
    out |= {f"{p} (bidirectional)": {"pooling": p, "causal": False} for p in ("mean", "last")}
    depths = (num_layers // 4, num_layers // 2, 3 * num_layers // 4)
    out |= {f"mean (layer {l})": {"pooling": "mean", "layer": l} for l in depths}
    out |= {f"mean (layer {l}, final norm)": {"pooling": "mean", "first_layers": l} for l in depths}
    return out


def first_layers(model, n: int):
    """``model`` cut after its first ``n`` decoder layers, sharing their weights, with the final norm
    kept: its last hidden state is layer ``n``'s output put through the norm the model applies before
    its head. ``hidden_states[n]`` of the whole model is that output *without* the norm (the residual
    stream), so comparing it with the last layer's normalised state would test depth and the norm at
    once; this compares depth alone."""
    top = copy.copy(model)
    top._modules = dict(model._modules)
    stack = copy.copy(decoder(model))
    stack._modules = dict(stack._modules)
    stack.layers = torch.nn.ModuleList(list(decoder(model).layers)[:n])
    setattr(top, model.base_model_prefix, stack)
    return top


class Readings:
    """The chapter's embedders of one profile, each built on first use (a variant is a view of the
    one loaded model: a pooling, a layer, a mask)."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.model, self.tokenizer = load_causal_lm(profile.model)
        self.variants = variants(self.model.config.num_hidden_layers)

    @cache
    def embedder(self, name: str) -> LLMEmbedder:
        kw = dict(self.variants[name])
        depth = kw.pop("first_layers", None)
        return LLMEmbedder(self.model if depth is None else first_layers(self.model, depth), self.tokenizer,
                           batch_size=self.profile.embed_batch_size, max_length=self.profile.max_length,
                           bf16=True, **kw)

    def encoder(self, table: str, name: str) -> Encoder:
        """``name`` as ``table`` reads it: a variant ("main"), an instructed pooling pooled over the whole
        prompt or over the query's own tokens ("instruction"), mean pooling ranked by a similarity."""
        if table == "main":
            return Encoder(self.embedder(name))
        if table == "instruction":
            pooling, over = name.split(" + instruction, pooled over ")
            embed = self.embedder(pooling)
            return Encoder(embed if over == "all" else InstructedEmbedder(embed, QUERY_INSTRUCTION),
                           query_prefix=QUERY_INSTRUCTION)
        if table == "similarity":
            return Encoder(self.embedder("mean"), similarity=name.removeprefix("mean, "))
        raise ValueError(f"unknown table {table!r}")


def instruction_names(poolings) -> list[str]:
    """The "instruction" table's readings of each instructed pooling among ``poolings``."""
    return [f"{p} + instruction, pooled over {over}" for p in INSTRUCTED if p in poolings for over in ("all", "the query")]


def _cell(profile: Profile, part: str, compute: Callable[[], list[dict]], **key) -> list[dict]:
    return cached_json("ch02_cells", cache_key(code_fingerprint(__name__), part=part, profile=profile.to_dict(), **key),
                       compute)


def scored(readings: Readings, seed: int, table: str, name: str) -> list[dict]:
    """``name`` of ``table`` scored on every domain's evaluation set of ``seed``, per query (cached)."""
    def compute() -> list[dict]:
        retrieval = {d: load_domain(d, readings.profile, seed).eval for d in DOMAINS}
        scores = evaluate_models({name: readings.encoder(table, name)}, retrieval, per_query=True).assign(seed=seed)
        return per_query_lists(scores, retrieval)
    return _cell(readings.profile, table, compute, seed=seed, name=name)


def sts(readings: Readings, seed: int, name: str) -> list[dict]:
    """``name`` on the STS sets (drawn with ``seed``; STS has no training split to vary)."""
    return _cell(readings.profile, "sts", lambda: evaluate_models(
        {name: readings.encoder("main", name)},
        sts=[load_sts(s, readings.profile.n_sts, seed) for s in STS_NAMES]).to_dict(orient="records"),
        seed=seed, name=name)


def geometry(readings: Readings, seed: int, name: str) -> list[dict]:
    """How anisotropic ``name``'s space is on ``seed``'s evaluation corpora, raw and centred."""
    def compute() -> list[dict]:
        corpus = [t for d in DOMAINS for t in load_domain(d, readings.profile, seed).eval.corpus.values()]
        vectors = readings.embedder(name).embed(corpus)
        return [{"variant": name, "anisotropy": anisotropy(vectors, seed=seed),
                 "anisotropy (centred)": anisotropy(center(vectors), seed=seed)}]
    return _cell(readings.profile, "geometry", compute, seed=seed, name=name)


def agreement(readings: Readings, seed: int) -> list[dict]:
    """Per domain, how often cosine, dot and Euclidean agree on mean pooling's top document."""
    def compute() -> list[dict]:
        mean = readings.embedder("mean")
        return [{"domain": d, **top1_agreement(mean.embed(list(r.queries.values())), mean.embed(list(r.corpus.values())))}
                for d in DOMAINS for r in [load_domain(d, readings.profile, seed).eval]]
    return _cell(readings.profile, "agreement", compute, seed=seed)


def per_query_lists(scores: pd.DataFrame, retrieval: dict) -> list[dict]:
    """Rows of an ``evaluate_models(per_query=True)`` table with the per-query dict turned into a list
    in the evaluation set's query order (so two models of one seed pair query by query)."""
    rows = scores.to_dict(orient="records")
    for row in rows:
        if isinstance(row.get("per_query"), dict):
            row["per_query"] = [row["per_query"][q] for q in retrieval[row["task"]].qrels]
        else:
            row.pop("per_query", None)
    return rows
