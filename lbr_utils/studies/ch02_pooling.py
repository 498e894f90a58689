"""Chapter 2's experiment: how many ways are there to read an embedding out of a causal LM?

Every variant reuses one loaded model; only the input format, the pooled tokens, the layer and the
attention mask change. Each variant is scored by the same harness as the baselines, per query, on
the evaluation split of the run's first seed; the variants a claim compares are scored on every
seed (no training here: a seed only draws another evaluation set, so the confidence intervals carry
the noise of which queries were asked). Scoring all of them on three seeds would take about three
hours on two cores, for rows that only describe. Every (seed, reading) is a cached cell
(``_pooling_cells``), so a run can take one seed at a time and resumes where it stopped.
"""

from __future__ import annotations

import pandas as pd
import torch

from ..pooling import POOL_FNS, build_inputs, get_pooling
from ..profiles import get_profile
from ..results import load_tables, save_results, timer
from ..stats import claim_family, judged_claim, per_query_differences
from ._pooling_cells import (QUERY_INSTRUCTION, SIMILARITIES, Readings, agreement, geometry, instruction_names, scored,
                             sts)
from ._pooling_cells import first_layers, variants  # noqa: F401  (the chapter's names: its notebook and tests read them)

NAME = __name__.rpartition(".")[2]
TITLE = "LLMs as embedders (chapter 2)"


def claimed_variants() -> set[str]:
    """The variants :data:`SURVEY_CLAIMS` compares (scored on every seed; the others on the first)."""
    names = {name for a, b, *_ in SURVEY_CLAIMS for name in (a, b)}
    return {name.split(" + instruction")[0] for name in names}


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


def run(profile_name: str, seeds: tuple[int, ...] | None = None) -> dict[str, pd.DataFrame]:
    """Score every variant on the first of ``seeds`` and the claimed ones on every seed
    (retrieval per query; the instruction and similarity studies; STS and the geometry of the space on
    the first seed, which needs no more), from the cell cache where it can."""
    profile = get_profile(profile_name)
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    with timer() as t:
        readings = Readings(profile)
        tables: dict[str, list] = {}
        for seed in seeds:
            first = seed == seeds[0]
            names = [n for n in readings.variants if first or n in claimed_variants()]
            work = [("main", names), ("instruction", instruction_names(names)),
                    ("similarity", [f"mean, {s}" for s in SIMILARITIES] if first else [])]
            for table, models in work:
                for name in models:
                    tables.setdefault(table, []).extend(scored(readings, seed, table, name))
            if first:  # the geometry of the space and STS: one seed's texts are enough to see them
                for name in names:
                    tables.setdefault("sts", []).extend(sts(readings, seed, name))
                    tables.setdefault("geometry", []).extend(geometry(readings, seed, name))
                tables["agreement"] = agreement(readings, seed)
    config = {"profile": profile.to_dict(), "variants": readings.variants,
              "query_instruction": QUERY_INSTRUCTION, "bf16_autocast": True}
    save_results(NAME, profile_name, tables, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in tables.items()}


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
    return {"survey": survey_claims(tables)}
