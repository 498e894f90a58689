"""Chapter 5a's experiments: the paper's stage ablation (Table 3), representation vs generation
(Table 2) and the separation ratio, on every domain and seed.

Every embedding here is the same one, LBR's: the last bottleneck token's state after ``[x, B]``
(bottleneck tokens are added, untrained, to models whose stage 1 had none). So the rows differ only
in what came before, which is the paper's question: does learning the domain through the bottleneck
first make a better embedder than contrastive learning alone, or than ordinary generative learning?
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from tqdm.auto import tqdm

from ..lbr import RATIO, ContrastiveConfig, GenerativeConfig, configs, max_length
from ..profiles import Profile, get_profile, lbr_profile
from ..results import load_tables, paper_numbers, save_results, timer
from ..stats import comparable, mean_of, paired_differences, spearman, spread, verdict
from ._lbr_cells import BASELINES, collect, run_baseline, run_cell, scale_line

NAME = __name__.rpartition(".")[2]
TITLE = "Learn Before Represent: stages (chapter 5a)"
TABLE2 = ("LLM", "LLM+GL", "LLM+IB-GL", "LLM+CL")  # the models whose generation Table 2 scores
GENERATION_DOMAIN = "medical"  # Table 2 is one domain in the paper (its IB-GL NDCG@10 is Table 3's medical)
LBR_DOMAINS = ("medical", "code")  # where the paper prints Table 3; chemistry only if the budget allows
# Table 3's claims: (stronger, weaker, the claim, the sign of stronger - weaker the paper reports).
STAGE_CLAIMS = [("LLM+IB-GL", "LLM+GL", "IB-GL beats standard GL before any contrastive learning", +1),
                ("LLM+IB-GL+CL", "LLM+CL", "IB-GL first beats contrastive learning alone", +1),
                ("LLM+IB-GL+CL", "LLM+GL+CL", "IB-GL first beats standard GL first", +1),
                ("LLM+GL+CL", "LLM+CL", "standard GL first hurts contrastive learning (paper: medical)", -1)]


def arms(profile: Profile, seed: int) -> list[tuple[str, GenerativeConfig | None, ContrastiveConfig | None, tuple]]:
    """(name, stage 1, stage 2, snapshots) of every LLM model of one (domain, seed).

    CL alone trains as many stage-2 steps as LBR's stage 2 *and* as many as LBR's two stages together
    (one run with a flat learning rate, scored at both step counts): the paper's protocol and equal
    compute. Its readouts: the bottleneck with trainable rows (LBR's architecture), the last token
    (what most LLM embedders read), the mean (the naive reference, at the paper's budget only)."""
    stage1, stage2 = configs(profile, seed)
    gl = replace(stage1, bottleneck=False)
    long = replace(stage2, steps=stage1.steps + stage2.steps)
    return [("LLM", None, None, ()), ("LLM+GL", gl, None, ()), ("LLM+IB-GL", stage1, None, ()),
            ("LLM+IB-GL+CL", stage1, stage2, ()), ("LLM+CL", None, long, (stage2.steps,)),
            ("LLM+GL+CL", gl, stage2, ()), ("LLM+CL (last token)", None, replace(long, pooling="last"), (stage2.steps,)),
            ("LLM+CL (mean)", None, replace(stage2, pooling="mean"), ())]


def run_one(profile: Profile, domain: str, seed: int, show_progress: bool = False) -> dict[str, list]:
    """Every model of one (domain, seed): Table 3's six, the fair CL-only baselines at two budgets,
    and the practitioner's baselines; generation scored for Table 2's four on its domain."""
    stage1, stage2 = configs(profile, seed)
    cells = [run_cell(profile, domain, seed, name, s1, s2, generate=name in TABLE2 and domain == GENERATION_DOMAIN,
                      snapshots=snaps, show_progress=show_progress) for name, s1, s2, snaps in arms(profile, seed)]
    cells += [run_baseline(profile, domain, seed, kind, steps=stage1.steps + stage2.steps) for kind in BASELINES]
    return collect(cells, domain=domain, seed=seed)


def run(profile_name: str, domains: tuple[str, ...] = LBR_DOMAINS, seeds: tuple[int, ...] | None = None,
        show_progress: bool = True) -> dict[str, pd.DataFrame]:
    """Every (domain, seed) of the study, from the cell cache where it holds them. A ``cpu`` run is
    split by domain (one notebook run per domain, then one for all that reads the cache)."""
    profile = lbr_profile(get_profile(profile_name))
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    out: dict[str, list] = {}
    with timer() as t:
        runs = [(d, s) for d in domains for s in seeds]
        for domain, seed in tqdm(runs, desc="domain x seed", disable=not show_progress):
            for key, rows in run_one(profile, domain, seed).items():
                out.setdefault(key, []).extend(rows)
    stage1, stage2 = configs(profile, seeds[0])
    config = {"profile": profile.to_dict(), "domains": list(domains), "stage1": stage1.__dict__,
              "stage2": stage2.to_dict(), "n_generate": profile.n_generate, "generation_domain": GENERATION_DOMAIN,
              "embedding": f"last of {stage2.pooling.k} bottleneck tokens (r={RATIO:g} of {max_length(profile)} "
                           "tokens), causal attention",
              # What the cells cost when they were computed (a split or resumed run reads them back).
              "compute_seconds": sum(r["seconds"] for r in out.get("training", []))}
    save_results(NAME, profile_name, out, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in out.items()}


def stage_claims(retrieval: pd.DataFrame, metric: str = "NDCG@10") -> pd.DataFrame:
    """Each Table-3 claim per domain: our mean paired difference (x100), the paper's, the verdict."""
    paper = {r["model"]: r for r in paper_numbers()["table3_stages"]["rows"]}
    scores = retrieval[retrieval.metric == metric]
    rows = []
    for a, b, text, sign in STAGE_CLAIMS:
        for domain in scores.domain.unique():
            diffs = paired_differences(scores[scores.domain == domain], a, b)
            rows.append({"claim": text, "domain": domain, "ours: mean diff (x100)": 100 * mean_of(diffs),
                         "± std": spread(diffs),
                         "paper: diff": paper[a].get(domain, float("nan")) - paper[b].get(domain, float("nan")),
                         "verdict": verdict(diffs, sign)})
    return pd.DataFrame(rows)


def generation_claims(retrieval: pd.DataFrame, generation: pd.DataFrame) -> pd.DataFrame:
    """Table 2's claims, judged over every (domain, seed) pair."""
    ndcg = retrieval[retrieval.metric == "NDCG@10"]
    paper = {r["model"]: r for r in paper_numbers()["table2_repr_gen"]["rows"]}
    by = ("domain", "seed")
    retrieves = paired_differences(ndcg, "LLM+IB-GL", "LLM+GL", by=by)
    bleu = generation.pivot_table(index=list(by), columns="model", values="BLEU-4")
    keeps = (bleu["LLM+IB-GL"] / bleu["LLM+GL"].where(bleu["LLM+GL"] > 0)).dropna().tolist()
    rows = [{"claim": "IB-GL retrieves better than GL (NDCG@10)",
             "ours": 100 * mean_of(retrieves), "± std": spread(retrieves),
             "paper": paper["IB-GL"]["NDCG@10"] - paper["GL"]["NDCG@10"], "verdict": verdict(retrieves, +1)},
            {"claim": "IB-GL keeps GL's generation (BLEU-4 ratio IB-GL / GL >= 0.8)",
             "ours": mean_of(keeps) if keeps else float("nan"), "± std": spread(keeps, 1.0),
             "paper": paper["IB-GL"]["BLEU-4"] / paper["GL"]["BLEU-4"],
             "verdict": comparable(keeps) if keeps else "not measurable (GL's BLEU-4 is 0)"},
            {"claim": "GL generates better than the base model (BLEU-4)",
             "ours": (bleu["LLM+GL"] - bleu["LLM"]).mean(), "± std": spread(bleu["LLM+GL"] - bleu["LLM"], 1.0),
             "paper": paper["GL"]["BLEU-4"] - paper["Base"]["BLEU-4"],
             "verdict": verdict((bleu["LLM+GL"] - bleu["LLM"]).tolist(), +1)}]
    return pd.DataFrame(rows)


def separation_prediction(separation: pd.DataFrame, retrieval: pd.DataFrame) -> pd.DataFrame:
    """Does the separation ratio after stage 1 predict NDCG@10 after stage 2? One row per start
    model, domain and seed, joined with the score its stage 2 reached."""
    ndcg = retrieval[(retrieval.metric == "NDCG@10") & retrieval.model.str.endswith("+CL")]
    final = ndcg.assign(start=ndcg.model.str.removesuffix("+CL"))[["start", "domain", "seed", "score"]]
    return separation.merge(final, left_on=["model", "domain", "seed"], right_on=["start", "domain", "seed"])


def separation_table(separation: pd.DataFrame, retrieval: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of the separation ratio after stage 1 with NDCG@10 after stage 2, over
    all (start model, domain, seed) points and within each domain."""
    joined = separation_prediction(separation, retrieval)
    rows = [{"points": "all", "n": len(joined), "Spearman": spearman(joined.separation_ratio, joined.score)}]
    rows += [{"points": domain, "n": len(g), "Spearman": spearman(g.separation_ratio, g.score)}
             for domain, g in joined.groupby("domain")]
    return pd.DataFrame(rows)


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    tables = load_tables(records[NAME])
    return {"scale": scale_line(records[NAME]),
            "Table 3: stages": stage_claims(tables["retrieval"]),
            "Table 2: representation and generation": generation_claims(tables["retrieval"], tables["generation"]),
            "The separation ratio (our definition; the paper names it without defining it)":
                separation_table(tables["separation"], tables["retrieval"])}
