"""Chapter 2's experiment: how many ways are there to read an embedding out of a causal LM?

Every variant reuses one loaded model; only the input format, the pooled tokens, the layer and the
attention mask change. Each variant is scored by the same harness as the baselines, per query, on
the evaluation split of the first seed; the variants a claim compares are scored on every seed (no
training here: a seed only draws another evaluation set, so the confidence intervals carry the noise
of which queries were asked). Scoring all of them on three seeds would take about three hours on two
cores, twice a notebook's budget, for rows that only describe.
"""

from __future__ import annotations

import copy

import pandas as pd
import torch

from ..data import DOMAINS, STS_NAMES, load_domain, load_sts
from ..embedders import LLMEmbedder
from ..evaluate import Encoder, evaluate_models
from ..geometry import anisotropy, center, top1_agreement
from ..instruct import InstructedEmbedder
from ..models import decoder, load_causal_lm
from ..pooling import POOL_FNS, build_inputs, get_pooling
from ..profiles import get_profile
from ..results import load_tables, save_results, timer
from ..stats import claim_family, display_claims, judged_claim, per_query_differences

NAME = __name__.rpartition(".")[2]
TITLE = "LLMs as embedders (chapter 2)"
QUERY_INSTRUCTION = "Instruct: Given a name or a question, retrieve the passage that answers it\nQuery: "
INSTRUCTED = ("mean", "last", "weighted_mean")


def variants(num_layers: int) -> dict[str, dict]:
    """Variant name -> LLMEmbedder keyword arguments; ``first_layers`` (a layer count) reads the last
    state of the model cut after that layer, through the final norm (:func:`first_layers`)."""
    out = {name: {"pooling": name} for name in ("first", "mean", "last", "weighted_mean", "prompteol", "echo")}
    out |= {f"{p} (bidirectional)": {"pooling": p, "causal": False} for p in ("mean", "last")}
    depths = (num_layers // 4, num_layers // 2, 3 * num_layers // 4)
    out |= {f"mean (layer {l})": {"pooling": "mean", "layer": l} for l in depths}
    out |= {f"mean (layer {l}, final norm)": {"pooling": "mean", "first_layers": l} for l in depths}
    return out


def claimed_variants() -> set[str]:
    """The variants :data:`SURVEY_CLAIMS` compares (scored on every seed; the others on the first)."""
    names = {name for a, b, *_ in SURVEY_CLAIMS for name in (a, b)}
    return {name.split(" + instruction")[0] for name in names}


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


def pooled_weights(tokenizer, text: str, pooling: str, max_length: int = 32) -> list[tuple[str, float]]:
    """Every token of ``text`` in ``pooling``'s input format, with the weight the pooling puts on its
    state: the pool function applied to one-hot states (every pooling is linear in the states, so
    this *is* its weighting). First and last pooling read one token; mean spreads evenly; the
    weighted mean leans on later tokens; prompt and echo formats add tokens of their own."""
    p = get_pooling(pooling)
    batch = build_inputs(tokenizer, [text], p, max_length)
    n = batch["input_ids"].shape[1]
    weights = POOL_FNS[p.pool](torch.eye(n)[None], batch["pool_mask"])[0]
    return list(zip(tokenizer.convert_ids_to_tokens(batch["input_ids"][0]), weights.tolist()))


def _instruction_encoders(embedders: dict[str, LLMEmbedder]) -> dict[str, Encoder]:
    """Each instructed pooling (of those in ``embedders``) two ways: pooled over the whole prompt, and
    over the query's own tokens."""
    out = {}
    for p in (p for p in INSTRUCTED if p in embedders):
        out[f"{p} + instruction, pooled over all"] = Encoder(embedders[p], query_prefix=QUERY_INSTRUCTION)
        out[f"{p} + instruction, pooled over the query"] = Encoder(InstructedEmbedder(embedders[p], QUERY_INSTRUCTION),
                                                                  query_prefix=QUERY_INSTRUCTION)
    return out


def run(profile_name: str, seeds: tuple[int, ...] | None = None) -> dict[str, pd.DataFrame]:
    """Score every variant on every task (retrieval per query and per seed; STS once, it has no
    split), plus the instruction, similarity and geometry studies."""
    profile = get_profile(profile_name)
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    with timer() as t:
        model, tok = load_causal_lm(profile.model)
        embedders = {}
        for name, kw in variants(model.config.num_hidden_layers).items():
            depth = kw.pop("first_layers", None)
            embedders[name] = LLMEmbedder(model if depth is None else first_layers(model, depth), tok,
                                          batch_size=profile.embed_batch_size, max_length=profile.max_length,
                                          bf16=True, **kw)
        sts = evaluate_models(embedders, sts=[load_sts(name, profile.n_sts, seeds[0]) for name in STS_NAMES])
        tables: dict[str, list] = {"sts": sts.to_dict(orient="records")}
        for seed in seeds:
            retrieval = {d: load_domain(d, profile, seed).eval for d in DOMAINS}
            scored = embedders if seed == seeds[0] else {k: v for k, v in embedders.items() if k in claimed_variants()}
            similarity = {f"mean, {s}": Encoder(embedders["mean"], similarity=s) for s in ("cosine", "dot", "euclidean")}
            for table, models in [("main", scored), ("instruction", _instruction_encoders(scored)),
                                  ("similarity", similarity if seed == seeds[0] else {})]:
                if not models:
                    continue
                scores = evaluate_models(models, retrieval, per_query=True).assign(seed=seed)
                tables.setdefault(table, []).extend(_per_query_lists(scores, retrieval))
            if seed == seeds[0]:  # the geometry of the space: one corpus is enough to see it
                corpus = [text for r in retrieval.values() for text in r.corpus.values()]
                tables["geometry"] = [{"variant": name, "anisotropy": anisotropy(e.embed(corpus), seed=seed),
                                       "anisotropy (centred)": anisotropy(center(e.embed(corpus)), seed=seed)}
                                      for name, e in embedders.items()]
                tables["agreement"] = [{"domain": d, **top1_agreement(embedders["mean"].embed(list(r.queries.values())),
                                                                      embedders["mean"].embed(list(r.corpus.values())))}
                                       for d, r in retrieval.items()]
    config = {"profile": profile.to_dict(), "variants": variants(model.config.num_hidden_layers),
              "query_instruction": QUERY_INSTRUCTION, "bf16_autocast": True}
    save_results(NAME, profile_name, tables, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in tables.items()}


def _per_query_lists(scores: pd.DataFrame, retrieval: dict) -> list[dict]:
    """Rows of an ``evaluate_models(per_query=True)`` table with the per-query dict turned into a list
    in the evaluation set's query order (so two models of one seed pair query by query)."""
    rows = scores.to_dict(orient="records")
    for row in rows:
        if isinstance(row.get("per_query"), dict):
            row["per_query"] = [row["per_query"][q] for q in retrieval[row["task"]].qrels]
        else:
            row.pop("per_query", None)
    return rows


SURVEY_CLAIMS = [  # (A, B, the claim, the sign of A - B it predicts, table, its source)
    # The survey reports both for *adapted* models (LLM2Vec trains after switching the mask; last-token
    # embedders are trained to put the text there): on the untrained model they are our hypotheses.
    ("mean (bidirectional)", "mean", "bidirectional attention reads text better than causal (untrained, mean pooling)",
     +1, "main", "ours, after survey §4 (LLM2Vec, adapted)"),
    ("last", "mean", "the last token summarises a causal LM's text better than the mean (untrained)", +1, "main",
     "ours, after survey §4 (trained last-token embedders)"),
    ("mean + instruction, pooled over the query", "mean + instruction, pooled over all",
     "with a query instruction, mean pooling over the query alone beats pooling over the whole prompt", +1,
     "instruction", "GritLM, NV-Embed")]


def survey_claims(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The claims this chapter tests (each with its source: the survey's claims about adapted models
    become hypotheses about the untrained one), per domain, judged on per-query differences over the
    seeds (hierarchical bootstrap), one Holm family."""
    rows = []
    for a, b, text, sign, table, source in SURVEY_CLAIMS:
        scores = tables[table]
        scores = scores[scores.metric == "NDCG@10"]
        for domain in sorted(scores.task.unique()):
            rows.append(judged_claim(text, per_query_differences(scores[scores.task == domain], a, b), sign,
                                     domain=domain, source=source, a=a, b=b))
    return claim_family(rows)


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    tables = load_tables(records[NAME])
    if "per_query" not in tables["main"]:  # a results file from before per-query scores: nothing to judge
        return {}
    return {"survey": display_claims(survey_claims(tables))}
