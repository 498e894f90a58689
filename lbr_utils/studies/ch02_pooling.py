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

import re

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


def claimed_variants(num_layers: int) -> set[str]:
    """The variants the claims compare (scored on every seed; the others on the first)."""
    names = {name for a, b, *_ in chapter_claims(num_layers) for name in (a, b)}
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


def layer_lines(ndcg: pd.DataFrame) -> list[str]:
    """Mean pooling by depth, read from the residual stream and through the final norm, each averaged
    over the domains (``ndcg``: reading x domain), as the lines the chapter prints, each ending with
    what its numbers say about the intermediate layers against the last."""
    last = ndcg.loc["mean"].mean()
    lines = []
    for kind, pattern in (("the residual stream", r"mean \(layer (\d+)\)"),
                          ("through the final norm", r"mean \(layer (\d+), final norm\)")):
        depths = dict(sorted((int(m.group(1)), ndcg.loc[name].mean()) for name in ndcg.index
                             if (m := re.fullmatch(pattern, name))))
        above = [d for d, v in depths.items() if v > last]
        says = ("every intermediate layer beats the last" if len(above) == len(depths) else
                "no intermediate layer beats the last" if not above else
                f"layer{'s' if len(above) > 1 else ''} {', '.join(map(str, above))} beat{'' if len(above) > 1 else 's'} the last")
        scores = list(depths.values()) + [last]
        if all(a > b for a, b in zip(scores, scores[1:])):
            says += ", and the score falls with every step in depth"
        shown = ", ".join(f"layer {d} **{100 * v:.1f}**" for d, v in depths.items())
        lines.append(f"Mean pooling by layer, {kind} (NDCG@10 averaged over the domains): {shown}, last layer "
                     f"**{100 * last:.1f}**: {says}.")
    return lines


def run(profile_name: str, seeds: tuple[int, ...] | None = None) -> dict[str, pd.DataFrame]:
    """Score every variant on the first of ``seeds`` and the claimed ones on every seed
    (retrieval per query; the instruction and similarity studies; STS and the geometry of the space on
    the first seed, which needs no more), from the cell cache where it can."""
    profile = get_profile(profile_name)
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    with timer() as t:
        readings = Readings(profile)
        num_layers = readings.model.config.num_hidden_layers
        tables: dict[str, list] = {}
        for seed in seeds:
            first = seed == seeds[0]
            names = [n for n in readings.variants if first or n in claimed_variants(num_layers)]
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
    config = {"profile": profile.to_dict(), "variants": readings.variants, "num_layers": num_layers,
              "query_instruction": QUERY_INSTRUCTION, "bf16_autocast": True}
    save_results(NAME, profile_name, tables, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in tables.items()}


SURVEY_CLAIMS = [  # (A, B, the claim, the sign of A - B it predicts, its source)
    # The survey reports both for *adapted* models (LLM2Vec trains after switching the mask; last-token
    # embedders are trained to put the text there): on the untrained model they are our hypotheses.
    ("mean (bidirectional)", "mean", "bidirectional attention reads text better than causal (untrained, mean pooling)",
     +1, "ours, after survey §4 (LLM2Vec, adapted)"),
    ("last", "mean", "the last token summarises a causal LM's text better than the mean (untrained)", +1,
     "ours, after survey §4 (trained last-token embedders)"),
    ("mean + instruction, pooled over the query", "mean + instruction, pooled over all",
     "with a query instruction, mean pooling over the query alone beats pooling over the whole prompt", +1,
     "GritLM, NV-Embed"),
    # Instructions help embedders *trained* with them; whether they help an untrained model is ours to test.
    ("mean + instruction, pooled over the query", "mean",
     "a query instruction helps the untrained model's mean pooling (pooled over the query)", +1,
     "ours, after E5-mistral, GritLM (trained with instructions)")]


def layer_claims(num_layers: int) -> list[tuple]:
    """The common observation that intermediate layers carry more general-purpose semantics than the
    last, as claims about this model's depth (its layer count names the variants), each layer read
    through the final norm so that it differs from the last layer in depth alone."""
    return [(f"mean (layer {depth}, final norm)", "mean",
             f"mean pooling {where} (layer {depth} of {num_layers}, through the final norm) reads text better than "
             "the last layer (untrained)", +1, "Skean et al. 2025 (intermediate layers)")
            for depth, where in ((num_layers // 4, "a quarter of the way up"), (num_layers // 2, "halfway up"))]


def chapter_claims(num_layers: int) -> list[tuple]:
    return SURVEY_CLAIMS + layer_claims(num_layers)


def survey_claims(tables: dict[str, pd.DataFrame], num_layers: int) -> pd.DataFrame:
    """The claims this chapter tests (each with its source: the survey's claims about adapted models
    become hypotheses about the untrained one), per domain, judged on per-query differences over the
    seeds (hierarchical bootstrap), one Holm family. A claim may compare readings of two tables (an
    instructed reading with a plain one): their model names differ, so the tables are read as one."""
    scores = pd.concat([tables["main"], tables["instruction"]])
    scores = scores[scores.metric == "NDCG@10"]
    rows = [judged_claim(text, per_query_differences(scores[scores.task == domain], a, b), sign,
                         domain=domain, source=source, a=a, b=b)
            for a, b, text, sign, source in chapter_claims(num_layers) for domain in sorted(scores.task.unique())]
    return claim_family(rows)


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    record = records[NAME]
    tables = load_tables(record)
    if "per_query" not in tables["main"] or "num_layers" not in record["config"]:  # from before these claims
        return {}
    return {"survey": survey_claims(tables, record["config"]["num_layers"])}
