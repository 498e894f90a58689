"""Chapter 4's experiment: can SmolLM2 write its own contrastive training data?

SmolLM2-135M-Instruct writes a query for each of ``N_DOCUMENTS`` CL answers (doc2query). Each query
passes six checks before it is used: it is not empty, not a degenerate repetition, not an echo of a
prompt example, not a copy of its document, does not quote its document's ICD code, and MiniLM ranks
its document first among all CL answers (the consistency filter). For a share of the kept queries it
also writes a sibling negative (flagged when it repeats the positive or names its code, when MiniLM
puts it closer to the query than the positive, or when it loops: :func:`negative_flags`) and BM25
mines one; they are inspected, not trained on. Chapter 3's base recipe then trains on the
documents with kept queries, with their human questions, their synthetic queries, half and half, and
both; every arm for the same number of epochs, so the arms of equal size get equal steps, and human
pairs for twice the epochs match human + synthetic in steps. Unfiltered queries (as many, drawn from
all written ones, so from other documents too) show what the checks buy together, and as many drawn
from the queries that passed every check but the consistency filter what that filter adds. Each
(seed, arm) is a cached cell (``_synthetic_cells``): an interrupted run resumes.
"""

from __future__ import annotations

import gc
import random

import numpy as np
import pandas as pd

from ..data import QARecord
from ..profiles import Profile, get_profile, lbr_profile
from ..results import load_tables, save_results, timer
from ..stats import (claim_family, gain_table, judged_claim, per_query_differences, seeds_wanted, signed, span,
                     still_climbing, unconverged, verdict_sentence)
from ..synth import degenerate
from ._contrastive_cells import base_recipe, cell
from ._lbr_cells import run_baseline
from ._synthetic_cells import ARMS as _CELL_ARMS
from ._synthetic_cells import CHECKS, LONGER, N_DOCUMENTS, N_NEGATIVES, datasets, synthesised, trained

NAME = __name__.rpartition(".")[2]
TITLE = "LLM-synthesised training data (chapter 4)"
MARGIN = 0.02  # "rivals": at most 2 NDCG@10 points worse
ENCODER = "all-MiniLM-L6-v2"  # as is: the encoder a practitioner would pick without training
# The practitioner's other choices, chapter 5a's cells at this scale, shared: no training at all, and MiniLM
# fine-tuned on every human pair of the contrastive split (about ten times an arm's pairs).
BASELINES = ("BM25", "MiniLM+CL")
# Passes over each arm's pairs. In a development run at 5 (the cells' default; not kept in a results file)
# the human arm had not flattened: its mean last-quarter dev gain was above the 1-point rule (though its
# CI did not clear it, so the gate would have judged its claims), while "human, twice the epochs" had
# flattened at 10. Every arm therefore trains for 10: our choice. Each arm is read at its best dev point
# (``_contrastive_cells.dev_selection``), so epochs beyond an arm's peak cost time, not quality; an arm
# read at its last step (the chapter's table says which) had not peaked, and more epochs might help it.
EPOCHS = 10
# The queries that passed every check but the consistency filter, as many as were kept: against the kept
# ones this isolates a round-trip consistency filter like Promptagator's (there the judge is a retriever
# trained on the synthetic queries; ours is MiniLM as is, our choice). InPars filters on the writer's
# log-probability instead.
UNCHECKED = "synthetic (no consistency filter)"
ARMS = (*_CELL_ARMS[:3], UNCHECKED, *_CELL_ARMS[3:])


def consistency_arm(queries: list[dict], domain: str, seed: int) -> list[QARecord]:
    """:data:`UNCHECKED`'s pairs: as many as were kept, drawn from the queries that passed every check
    before the consistency filter (the kept ones among them, so the two arms share part of their
    documents). The unfiltered arm cannot say what the filter adds: most of its queries are copies of
    their document or quote its code, which the earlier checks drop."""
    passed = [row for row in queries if not any(row[check] for check in CHECKS[:-1])]
    drawn = random.Random(seed).sample(passed, sum(row["kept"] for row in queries))
    return [QARecord(id=row["id"] + "-synq", domain=domain, question=row["query"], answer=row["document"],
                     entity=row["entity"], group=row["group"]) for row in drawn]


def epochs_for(profile: Profile) -> int:
    """Passes over each arm's pairs: :data:`EPOCHS`, or 2 at ``smoke`` (which proves the code runs, in CI's minutes)."""
    return 2 if profile.name == "smoke" else EPOCHS


def run(profile_name: str, domain: str = "medical", seeds: tuple[int, ...] | None = None,
        n_documents: int | None = None) -> dict[str, pd.DataFrame]:
    """Synthesise, check and train every arm on every seed (from the cell cache where it can)."""
    profile = lbr_profile(get_profile(profile_name))
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    n_documents = n_documents or min(N_DOCUMENTS, profile.n_cl)
    epochs = epochs_for(profile)
    out: dict[str, list] = {}

    def add(tables: dict[str, list], seed: int) -> None:
        for table, rows in tables.items():
            out.setdefault(table, []).extend(dict(row, seed=seed) for row in rows)

    with timer() as t:
        for seed in seeds:
            synth = synthesised(profile, domain, seed, n_documents)
            add(synth, seed)
            sets = {**datasets(synth["queries"], domain, seed),
                    UNCHECKED: consistency_arm(synth["queries"], domain, seed)}
            add({"sizes": [{"dataset": k, "pairs": len(v)} for k, v in sets.items()]
                 + [{"dataset": LONGER, "pairs": len(sets["human"])}]}, seed)
            add(trained(profile, domain, seed, "before training", []), seed)
            # What a practitioner would use instead of training at all: chapter 3's cell, shared.
            add({"retrieval": cell(profile, domain, seed, ENCODER, None)["retrieval"]}, seed)
            steps = profile.generative_steps + profile.train_steps  # chapter 5a's, so its cells are read back
            add({"retrieval": [dict(row, model=kind) for kind in BASELINES
                               for row in run_baseline(profile, domain, seed, kind, steps=steps)["retrieval"]]}, seed)
            runs = [(name, records, epochs) for name, records in sets.items()] + [(LONGER, sets["human"], 2 * epochs)]
            for name, records, passes in runs:
                if len(records) >= 2:  # a contrastive batch needs two pairs
                    add(trained(profile, domain, seed, name, records, passes), seed)
                    gc.collect()  # the next arm loads its model in this process: free this one's first
    config = {"profile": profile.to_dict(), "domain": domain, "n_documents": n_documents,
              "n_negatives": N_NEGATIVES, "epochs": epochs, "recipe": base_recipe(profile, seeds[0]).to_dict(),
              "generator": {"model": profile.model, "greedy": True, "bf16": True},
              "filter_embedder": "all-MiniLM-L6-v2", "margin": MARGIN,
              "compute_seconds": sum(r["seconds"] for r in out.get("training", []))}
    save_results(NAME, profile_name, out, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in out.items()}


STEP_NAMES = {"empty": "not empty", "degenerate": "not degenerate", "echoes a prompt example": "not a prompt's echo",
              "copies its document": "not a copy of its document", "quotes its document's code": "not quoting its code",
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


NEGATIVE_FLAGS = ("near-copy of the positive", "closer to the query than the positive", "a degenerate loop")


def negative_flags(negatives: pd.DataFrame) -> pd.DataFrame:
    """Why a written negative may be no negative, one column each and whether any holds: it repeats
    the positive's words (a near-copy), MiniLM puts it closer to the query than the positive (a
    paraphrase the word check misses; a false negative either way), or it loops instead of writing."""
    if negatives.empty:  # a seed that kept no query wrote no negative
        return pd.DataFrame(columns=[*NEGATIVE_FLAGS, "any of these"], dtype=bool)
    flags = pd.DataFrame({
        "near-copy of the positive": negatives["near-copy of the positive"].astype(bool),
        "closer to the query than the positive":
            negatives["cos(query, written negative)"] > negatives["cos(query, positive)"],
        "a degenerate loop": negatives["written negative"].map(lambda t: bool(t) and degenerate(t))})
    return flags.assign(**{"any of these": flags.any(axis=1)})


def survey_claims(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The survey's and Promptagator's claims about synthetic pairs, judged per query over the
    seeds, one Holm family; an arm far from convergence is not judged, and one that has not flattened
    is marked (:func:`lbr_utils.stats.still_climbing`)."""
    retrieval = tables["retrieval"]
    gains = gain_table(tables["training"]) if "training" in tables else None
    late = set() if gains is None else {m for m, far in zip(gains.model, gains["far from convergence"]) if far}

    def claim(text: str, a: str, b: str, source: str, margin: float = 0.0) -> dict:
        row = unconverged(judged_claim(text, per_query_differences(retrieval, a, b), +1, margin=margin,
                                       source=source, a=a, b=b), late)
        return row if gains is None else still_climbing(row, gains)

    return claim_family([
        claim(f"LLM-synthesised pairs rival human pairs (at most {100 * MARGIN:.0f} points worse; same documents, "
              "epochs and step budget; each arm read at its best dev step)", "synthetic", "human", "survey §3",
              MARGIN),
        claim("LLM-synthesised pairs added to human pairs improve the embedder (same documents and epochs, so "
              "twice the step budget; each arm read at its best dev step)",
              "human + synthetic", "human", "survey §3"),
        claim("adding synthetic pairs beats training twice as long on the human pairs (equal step budget; each "
              "arm read at its best dev step)", "human + synthetic", LONGER, "survey §3"),
        claim("the consistency filter makes synthetic pairs better: kept queries against as many that passed "
              "every other check (equal pairs and epochs; many of its pairs are the kept queries themselves)",
              "synthetic", UNCHECKED, "Promptagator"),
        claim("all the checks together make synthetic pairs better: kept queries against as many drawn from all "
              "written ones (equal pairs and epochs; their documents differ)", "synthetic", "synthetic (unfiltered)",
              "ours: the checks"),
        claim("half human, half synthetic beats human pairs alone at equal pairs", "mix (equal pairs)", "human",
              "survey §3")])


def _spread(per_seed: pd.Series, fmt: str = "{:.0f}") -> str:
    """A per-seed quantity as "mean (per seed a-b)", or one value where every seed prints alike."""
    mean, spread = fmt.format(per_seed.mean()), span(per_seed, fmt)
    return mean if spread == mean else f"{mean} (per seed {spread})"


def _mean_scores(retrieval: pd.DataFrame) -> pd.Series:
    """Each model's NDCG@10 (x100), the mean over its seeds of the mean over queries."""
    return retrieval.assign(score=lambda t: 100 * t.per_query.map(np.mean)).groupby("model").score.mean()


def summary_lines(tables: dict[str, pd.DataFrame], record: dict) -> list[str]:
    """What the data side of the chapter shows, glued from the results: how many queries the writer's
    checks keep, whether a judge the filter never saw agrees with it, how many of the written negatives
    are no negatives, and how small the arms are that the claims rest on."""
    queries, sizes = tables["queries"], tables["sizes"]
    written = queries.groupby("seed").size()
    kept = queries.groupby("seed").kept.sum()
    steps = funnel(queries)
    drops = (steps.iloc[:-1, :-1].to_numpy() - steps.iloc[1:, :-1].to_numpy()).mean(axis=1)
    worst = steps.index[1:][int(drops.argmax())]
    reached = queries[~queries[list(CHECKS[:-1])].astype(bool).any(axis=1)]
    first = reached.groupby("kept")["BM25 rank"].agg(lambda r: 100 * (r == 1).mean())
    lines = [f"- **What the checks keep:** {_spread(kept)} of {_spread(written)} written queries per seed "
             f"({100 * kept.sum() / written.sum():.0f}%). The check that drops the most: \"{worst}\" "
             f"({drops.max():.0f} queries per seed on average)."]
    if {True, False} <= set(first.index):
        lines.append(f"- **A judge the filter never saw:** BM25 ranks the query's own document first for "
                     f"{first[True]:.0f}% of the kept queries and {first[False]:.0f}% of the dropped ones (those "
                     "that reached the filter, pooled over seeds): "
                     + ("the filter keeps the queries BM25 also finds easy to answer. That is findability, not "
                        "training value, which the claims below test." if first[True] > first[False] else
                        "by this judge the filter does not keep the more findable queries."))
    negatives = tables.get("negatives", pd.DataFrame())
    if not negatives.empty:
        flags = 100 * negative_flags(negatives).groupby(negatives.seed).mean().mean()
        lines.append(f"- **Written negatives:** {flags['any of these']:.0f}% are flagged as doubtful (near-copies of the "
                     f"positive {flags['near-copy of the positive']:.0f}%, closer to the query than the positive "
                     f"{flags['closer to the query than the positive']:.0f}%, loops "
                     f"{flags['a degenerate loop']:.0f}%; one negative can carry several flags). The training "
                     "here uses in-batch negatives only, so these are inspected, not trained on.")
    pairs = sizes[sizes.dataset == "human"].set_index("seed").pairs
    training = tables["training"]
    arm_steps = training[training.model == "human"].set_index("seed").steps
    fit = (f" Every arm ends with a training loss of {span(training.final_loss, '{:.3f}')} nats against "
           f"{np.log(record['config']['recipe']['batch_size']):.2f} at chance (ln of the batch): it fits its pairs "
           "almost exactly, so the dev point it is read at matters." if "final_loss" in training else "")
    lines.append(f"- **How much the claims rest on:** {_spread(pairs)} pairs per arm (human + synthetic: twice as "
                 f"many), {record['config']['epochs']} epochs, so {_spread(arm_steps)} steps for the human arm.{fit} The "
                 "human questions are ICD-10-CM inclusion terms, the same kind of text as the evaluation queries: "
                 "a gap between human and synthetic pairs measures how well a query matches the evaluation's kind "
                 "of query as well as how good it is.")
    scores = _mean_scores(tables.get("retrieval", pd.DataFrame(columns=["model", "per_query"])))
    if {"human", LONGER} <= set(scores.index) and "dev_curve" in training:
        best = {m: training[training.model == m].set_index("seed").dev_curve.map(
            lambda c: 100 * max(p["dev NDCG@10"] for p in c)) for m in ("human", LONGER)}
        dev, score = best[LONGER] - best["human"], scores[LONGER] - scores["human"]
        seeds = f" (per seed {signed(dev.min())} to {signed(dev.max())})" if len(dev) > 1 else ""
        lines.append(f"- **Were the human pairs under-trained?** \"{LONGER}\" continues the human run: its best dev "
                     f"point is {signed(dev.mean())}{seeds} points higher, its evaluation score {signed(score)} "
                     f"({scores[LONGER]:.1f} against {scores['human']:.1f}, mean over seeds)"
                     + (": the dev gain moves the evaluation score by less than a point, so on what the claims "
                        "measure more epochs would not have changed the human arm much." if abs(score) < 1 else "."))
    arms = scores.reindex(ARMS).dropna()
    if ENCODER in scores and len(arms):
        others = "".join(f", {name} {scores[name]:.1f}" for name in BASELINES if name in scores)
        lines.append(f"- **Against what a practitioner would use:** {ENCODER} as is scores {scores[ENCODER]:.1f} "
                     f"NDCG@10 (mean over seeds){others} (MiniLM+CL: fine-tuned on all "
                     f"{record['config']['profile']['n_cl']} human pairs of the split); the best arm, "
                     f"\"{arms.idxmax()}\", {arms.max():.1f}. "
                     + ("No arm reaches the encoder as is: at this scale a practitioner would keep it."
                        if arms.max() < scores[ENCODER] else "The best arm passes the encoder as is."))
    return lines


def answer_lines(judged: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> list[str]:
    """The chapter's question answered from its verdicts (does a small writer produce pairs worth
    training on?), and what would decide what is left open; every number glued from ``judged`` (the
    claims of :func:`survey_claims`) and the tables."""
    row = {(r["a"], r["b"]): r for r in judged.to_dict(orient="records")}

    def said(a: str, b: str, *sentences: str) -> str:
        return verdict_sentence(row[a, b], *sentences)

    answer = " ".join([
        said("synthetic", "human", "Its kept queries train as well as human questions on the same documents",
             "Its kept queries train worse than human questions on the same documents, by more than the claim's margin",
             "Whether its kept queries train as well as human questions is not decided"),
        said("human + synthetic", "human", "Added to the human pairs, they help", "Added to the human pairs, they hurt",
             "Whether adding them to the human pairs helps is not decided"),
        said("human + synthetic", LONGER, "They help more than training the human pairs twice as long does",
             "Training the human pairs twice as long helps more",
             "Whether they help more than training the human pairs twice as long is not decided")])
    scores = _mean_scores(tables["retrieval"])
    best = scores.reindex(ARMS).max()
    if ENCODER in scores and best < scores[ENCODER]:
        answer += (f" Every arm (the best {best:.1f}) stays below {ENCODER} as is ({scores[ENCODER]:.1f}): at this "
                   "scale the practical answer is the encoder, not an LLM of this size fine-tuned on these pairs.")
    pairs = tables["sizes"][tables["sizes"].dataset == "human"].pairs.mean()
    return [f"- **The chapter's question, does a small writer produce pairs worth training on?** At this scale: {answer}",
            "- **What would decide it.** " + seeds_wanted(judged.to_dict(orient="records"))
            + f"More pairs per arm: the checks keep a small share of what the writer writes, so the arms have "
            f"{pairs:.0f} pairs each (mean over seeds); a query for every document of a larger split, or several per "
            "document, would give them more. A larger writer. And an evaluation whose queries are not written in "
            "the human questions' style, which may favour the human pairs here."]


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    tables = load_tables(records[NAME])
    if "per_query" not in tables["retrieval"]:  # a results file from before per-query scores
        return {}
    return {"survey": survey_claims(tables)}
