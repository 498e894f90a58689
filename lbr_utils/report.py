"""Our numbers beside the paper's: seed summaries and a verdict rule written down once.

The paper's numbers live in ``paper_lbr.json`` (quoted from the paper, never computed); ours come
from results files. A claim of the paper is a direction ("A beats B"); we judge it on per-seed
paired differences, so a claim is *reproduced* only if every seed agrees with it.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Sequence

import numpy as np
import pandas as pd


def paper_numbers() -> dict:
    """The LBR paper's tables, as quoted in ``lbr_utils/paper_lbr.json``."""
    return json.loads(resources.files("lbr_utils").joinpath("paper_lbr.json").read_text())


def mean_std(table: pd.DataFrame, keys: Sequence[str], value: str = "score", scale: float = 100.0) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; NaN for one seed) and seed count of ``value`` per ``keys``."""
    grouped = table.groupby(list(keys), sort=False)[value]
    out = grouped.agg(["mean", "std", "count"]).rename(columns={"count": "seeds"})
    out[["mean", "std"]] *= scale
    return out


def fmt(mean: float, std: float, digits: int = 1) -> str:
    """``"34.2 ± 1.3"``; a single seed has no spread and prints as the mean alone."""
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def verdict(differences: Sequence[float], paper_difference: float) -> str:
    """Judge the paper's claim ``A - B = paper_difference`` from our per-seed differences ``A - B``.

    reproduced: every seed has the paper's sign; partly: the mean has it but not every seed;
    not reproduced: the mean has the opposite sign (or is exactly zero).
    """
    diffs = list(differences)
    if not diffs:
        raise ValueError("no per-seed differences to judge")
    sign = 1 if paper_difference > 0 else -1
    if all(d * sign > 0 for d in diffs):
        return "reproduced"
    if sum(diffs) * sign > 0:
        return "partly"
    return "not reproduced"


def spread(values: Sequence[float], scale: float = 100.0) -> float:
    """Standard deviation (ddof=1) of per-seed differences or ratios, scaled like the mean beside it;
    NaN for a single value, which has no spread."""
    values = list(values)
    return float(np.std(values, ddof=1)) * scale if len(values) > 1 else float("nan")


def paired_differences(table: pd.DataFrame, a: str, b: str, column: str = "model", value: str = "score",
                       by: Sequence[str] = ("seed",)) -> list[float]:
    """Per-seed ``value(a) - value(b)`` from a long table (one row per model and seed)."""
    wide = table.pivot_table(index=list(by), columns=column, values=value)
    return (wide[a] - wide[b]).dropna().tolist()


def comparable(ratios: Sequence[float], floor: float = 0.8) -> str:
    """Judge "A keeps B's level" from per-seed ratios A / B: reproduced if every seed keeps at least
    ``floor`` of B, partly if the mean does, not reproduced otherwise."""
    ratios = list(ratios)
    if not ratios:
        raise ValueError("no per-seed ratios to judge")
    if all(r >= floor for r in ratios):
        return "reproduced"
    return "partly" if sum(ratios) / len(ratios) >= floor else "not reproduced"


# Table 3's claims: (stronger, weaker, the claim, the sign of stronger - weaker the paper reports).
STAGE_CLAIMS = [("LLM+IB-GL", "LLM+GL", "IB-GL beats standard GL before any contrastive learning", +1),
                ("LLM+IB-GL+CL", "LLM+CL", "IB-GL first beats contrastive learning alone", +1),
                ("LLM+IB-GL+CL", "LLM+GL+CL", "IB-GL first beats standard GL first", +1),
                ("LLM+GL+CL", "LLM+CL", "standard GL first hurts contrastive learning (paper: medical)", -1)]


def stage_claims(retrieval: pd.DataFrame, metric: str = "NDCG@10") -> pd.DataFrame:
    """Each Table-3 claim per domain: our mean paired difference (x100), the paper's, the verdict."""
    paper = {r["model"]: r for r in paper_numbers()["table3_stages"]["rows"]}
    scores = retrieval[retrieval.metric == metric]
    rows = []
    for a, b, text, sign in STAGE_CLAIMS:
        for domain in scores.domain.unique():
            diffs = paired_differences(scores[scores.domain == domain], a, b)
            rows.append({"claim": text, "domain": domain, "ours: mean diff (x100)": 100 * sum(diffs) / len(diffs),
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
             "ours": 100 * sum(retrieves) / len(retrieves), "± std": spread(retrieves),
             "paper": paper["IB-GL"]["NDCG@10"] - paper["GL"]["NDCG@10"], "verdict": verdict(retrieves, +1)},
            {"claim": "IB-GL keeps GL's generation (BLEU-4 ratio IB-GL / GL >= 0.8)",
             "ours": sum(keeps) / len(keeps) if keeps else float("nan"), "± std": spread(keeps, 1.0),
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


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y)[0])


def _claim(text: str, ours: float, std: float, paper: float, judged: str) -> dict:
    return {"claim": text, "ours": ours, "± std": std, "paper": paper, "verdict": judged}


def _paired_claim(text: str, diffs: Sequence[float], paper: float) -> dict:
    """"A beats B", judged on the per-seed differences A - B: their mean and spread (x100), the verdict."""
    return _claim(text, 100 * sum(diffs) / len(diffs), spread(diffs), paper, verdict(diffs, +1))


def ablation_claims(retrieval: pd.DataFrame, training: pd.DataFrame) -> pd.DataFrame:
    """The claims of Tables 4-6 and Figure 3 from the ablation run (one domain, every seed)."""
    paper = paper_numbers()
    ndcg = retrieval[retrieval.metric == "NDCG@10"]
    part = {name: ndcg[ndcg.part == name] for name in ndcg.part.unique()}
    rows = []
    t4 = {r["stage1"]: r for r in paper["table4_attention"]["rows"]}
    d = paired_differences(part["attention"], "IB-GL+CL (causal)", "IB-GL+CL (bidirectional)")
    rows.append(_paired_claim("after IB-GL, causal contrastive learning beats bidirectional (NDCG@10 x100)", d,
                              t4["IB-GL"]["causal"] - t4["IB-GL"]["bidirectional"]))
    ratio = part["ratio"].assign(r=lambda t: t.model.str.removeprefix("r=").astype(float))
    means = ratio.groupby("r").score.mean()
    best = float(means.idxmax())
    rows.append(_claim("the best compression ratio is interior, neither the mildest nor the harshest (best r)",
                       best, float("nan"), float("nan"), "reproduced" if means.index.min() < best < means.index.max()
                       else "not reproduced"))
    t6 = {r["model"]: r for r in paper["table6_styles"]["rows"]}
    for ib, std in [("IB-GL (SFT)", "Standard SFT"), ("IB-GL (PT)", "Standard PT")]:
        d = paired_differences(part["style"], ib, std)
        rows.append(_paired_claim(f"{ib} beats {std} (NDCG@10 x100)", d, t6[ib]["retrieval"] - t6[std]["retrieval"]))
    alloc = part["allocation"]
    d = [x for share in sorted(alloc.gl_share.unique()) if share > 0
         for x in paired_differences(alloc[alloc.gl_share == share], "IB-GL", "GL")]
    rows.append(_paired_claim("with a fixed step budget, IB-GL beats GL at every share given to stage 1 (NDCG@10 x100)",
                              d, float("nan")))
    secs = training[(training.part == "style") & (training.stage == 1)].pivot_table(index="seed", columns="model",
                                                                                     values="seconds")
    for ib, std in [("IB-GL (SFT)", "Standard SFT"), ("IB-GL (PT)", "Standard PT")]:
        ratios = secs[ib] / secs[std]
        rows.append(_claim(f"stage-1 wall time, {ib} / {std}", float(ratios.mean()), spread(ratios, 1.0),
                           t6[ib]["time"], "(timing: see the step-time benchmark)"))
    return pd.DataFrame(rows)


def main_claims(retrieval: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """LBR against the reference points on the same evaluation sets (NDCG@10, paired by seed)."""
    table = pd.concat([baselines, retrieval[retrieval.part == "main"]])
    ndcg = table[table.metric == "NDCG@10"]
    rows = []
    for other in ["BM25", "all-MiniLM-L6-v2", "LLM + CL (mean pooling)"]:
        d = paired_differences(ndcg, "LBR (IB-GL + CL)", other)
        rows.append(_paired_claim(f"LBR beats {other} (NDCG@10 x100)", d, float("nan")))
    return pd.DataFrame(rows)


def _ndcg(rows: list[dict], model: str, domain: str) -> float:
    """NDCG@10 of ``model`` on ``domain`` from a results file's long retrieval rows."""
    return next(r["score"] for r in rows if r["model"] == model and r["task"] == domain and r["metric"] == "NDCG@10")


def _survey_claim(text: str, source: str, evidence: str, diffs: Sequence[float], sign: int) -> dict:
    return {"claim": text, "source": source, "ours (x100)": 100 * sum(diffs) / len(diffs), "± std": spread(diffs),
            "evidence": evidence,
            "units": len(diffs), "verdict": verdict(diffs, sign)}


def survey_claims(records: dict[str, dict]) -> pd.DataFrame:
    """The survey's and the practice article's claims that chapters 2-4, 6 and 7 test, judged on our runs.

    ``records`` maps an experiment name to its results record; a claim whose experiment is missing is
    left out. "units" counts the paired differences judged (domains, or the one run of a chapter)."""
    rows = []
    if "pooling" in records:
        main = records["pooling"]["metrics"]["main"]
        domains = sorted({r["task"] for r in main if r["kind"] == "retrieval"})
        diffs = [_ndcg(main, "mean (bidirectional)", d) - _ndcg(main, "mean", d) for d in domains]
        rows.append(_survey_claim("bidirectional attention reads text better than causal (untrained, mean pooling)",
                                  "survey §4", "NDCG@10, per domain (chapter 2)", diffs, +1))
    if "contrastive" in records:
        m = records["contrastive"]["metrics"]
        ret = m["retrieval"]
        domain = ret[0]["task"]
        score = {r["model"]: r["score"] for r in ret if r["metric"] == "NDCG@10"}
        aniso = {r["model"]: r["anisotropy"] for r in m["geometry"]}
        smallest = min(r["dim"] for r in m["matryoshka"])
        at = {r["run"]: r["NDCG@10"] for r in m["matryoshka"] if r["dim"] == smallest}
        base = "in-batch, t=0.05 (base)"
        rows += [
            _survey_claim("contrastive fine-tuning lowers anisotropy (mean cosine of random pairs)", "survey §4",
                          f"anisotropy, {domain} corpus (chapter 3)", [aniso[base] - aniso["before training"]], -1),
            _survey_claim("hard negatives improve contrastive learning", "article; survey §3",
                          f"NDCG@10, {domain} (chapter 3)", [score["+ hard negatives (filtered)"] - score[base]], +1),
            _survey_claim("filtering false negatives out of the hard negatives helps", "survey, open question 2",
                          f"NDCG@10, {domain} (chapter 3)",
                          [score["+ hard negatives (filtered)"] - score["+ hard negatives (unfiltered)"]], +1),
            _survey_claim(f"Matryoshka training keeps more quality when truncated (to {smallest} dims)", "article",
                          f"NDCG@10 at {smallest} dims, {domain} (chapter 3)", [at["Matryoshka"] - at[base]], +1)]
        if "baselines" in records:
            minilm = _ndcg(records["baselines"]["metrics"], "all-MiniLM-L6-v2", domain)
            rows.append(_survey_claim("a contrastively fine-tuned LLM matches or beats an encoder (all-MiniLM-L6-v2)",
                                      "survey §4", f"NDCG@10, {domain}, LoRA base recipe (chapters 1, 3)",
                                      [score[base] - minilm], +1))
    if "synthetic" in records:
        score = {r["model"]: r["score"] for r in records["synthetic"]["metrics"]["retrieval"] if r["metric"] == "NDCG@10"}
        rows += [_survey_claim("LLM-synthesised pairs added to human pairs improve the embedder", "survey §3",
                               "NDCG@10, medical (chapter 4)", [score["human + synthetic"] - score["human"]], +1),
                 _survey_claim("LLM-synthesised pairs alone rival human pairs", "survey §3",
                               "NDCG@10, medical (chapter 4)", [score["synthetic (filtered)"] - score["human"]], +1)]
    if "compression" in records:
        rows += compression_claims(records["compression"]["metrics"])
    if "inversion" in records:
        rows += inversion_claims(records["inversion"]["metrics"])
    return pd.DataFrame(rows)


def compression_claims(metrics: dict) -> list[dict]:
    """Chapter 6 judged: at the same token budget, is a learned summary better than the first tokens,
    and does decoding from it pay off? (Scores in the file are x100 already.)"""
    quality = pd.DataFrame(metrics["quality"])
    budgeted = quality[quality["mode"] != "full"]

    def gains(task: str, metric: str, ratio: float | None = None) -> list[float]:
        sub = budgeted[(budgeted.task == task) & ((budgeted.ratio == ratio) if ratio else True)]
        wide = sub.pivot_table(index=["domain", "ratio"], columns="mode", values=metric)
        return ((wide["compressed"] - wide["truncated"]) / 100).tolist()

    decoding = pd.DataFrame(metrics["decoding"]).pivot_table(index="passage_tokens", columns="reading",
                                                             values="ms_per_token")
    full, compressed = decoding["full"], decoding.drop(columns="full").iloc[:, 0]
    return [
        _survey_claim("at the same token budget (r = 8), a compressed context answers more questions than truncation",
                      "survey, embedding understanding", "QA exact match, per domain (chapter 6)",
                      gains("qa", "exact_match", 8.0), +1),
        _survey_claim("at the same token budget, a compressed context reconstructs the passage better than truncation",
                      "survey, embedding understanding", "token accuracy, per (domain, ratio) (chapter 6)",
                      gains("reconstruct", "token_accuracy"), +1),
        _survey_claim("decoding from the compressed context (r = 8) is faster per generated token",
                      "survey, embedding understanding", "share of time per token saved, per passage length (chapter 6)",
                      ((full - compressed) / full).tolist(), +1)]


def inversion_claims(metrics: dict) -> list[dict]:
    """Chapter 7 judged against its template floor: a guess scored against *another* text's embedding
    shows what the domain's shared template alone buys, so only the excess over it counts as a leak.
    A file without a floor (written before it existed) is not judged. (Scores are x100 already.)"""
    clean = {r["embedder"]: r["token_f1"] for r in metrics["inversion"] if r["noise"] == 0}
    floor = {r["embedder"]: r["token_f1"] for r in metrics.get("floor", [])}
    if not floor:
        return []
    return [_survey_claim("stored embeddings leak their text: an inverter recovers more than the domain's template",
                          "survey, embedding understanding",
                          "token F1 from the own embedding minus from another text's, per embedder (chapter 7)",
                          [(clean[e] - floor[e]) / 100 for e in clean], +1)]


PAGE = "book/reproduction.md"


def _table(frame: pd.DataFrame) -> str:
    return frame.astype(object).where(frame.notna(), None).to_markdown(index=False, floatfmt=".2f", missingval="–")


def _section(title: str, experiment: str, profile: str, body) -> list[str]:
    from .results import load_results, provenance_line

    try:
        record = load_results(experiment, profile)
    except FileNotFoundError:
        return [f"## {title}", "", f"Not run yet in profile `{profile}` (no `results/{profile}/{experiment}.json`).", ""]
    return [f"## {title}", "", provenance_line(record), "", *body(record), ""]


def reproduction_page(profile: str = "cpu") -> str:
    """The "Reproduction report" page, made from the results files only (never edit it by hand:
    ``python -m lbr_utils.report`` rewrites it, and a test fails when it is stale)."""
    from .results import load_tables

    paper = paper_numbers()

    def scale(record) -> str:
        p = record["config"]["profile"]
        return (f"**Our scale:** `{p['model']}`, {p['n_gl']:,} GL / {p['n_cl']:,} CL records and {p['n_eval']:,} "
                f"evaluation queries per domain, texts cut to {p['max_length']} tokens, stage 1 {record['config']['stage1']['steps']} steps, stage 2 "
                f"{record['config']['stage2']['steps']} steps, batch {p['batch_size']}, seeds {record['provenance']['seeds']}. "
                f"**The paper's:** {paper['scale']}.")

    def stages(record):
        tables = load_tables(record)
        joined = separation_prediction(tables["separation"], tables["retrieval"])
        within = {d: spearman(g.separation_ratio, g.score) for d, g in joined.groupby("domain")}
        return [scale(record), "", "### Table 3: stages", "", _table(stage_claims(tables["retrieval"])), "",
                "### Table 2: representation and generation", "",
                _table(generation_claims(tables["retrieval"], tables["generation"])), "",
                "### The separation ratio (our definition; the paper names it without defining it)", "",
                f"Spearman correlation of the separation ratio after stage 1 with NDCG@10 after stage 2, over "
                f"{len(joined)} (start model, domain, seed) points: {spearman(joined.separation_ratio, joined.score):.2f}; "
                "within each domain: " + ", ".join(f"{d} {r:.2f}" for d, r in within.items()) + "."]

    def ablations(record):
        tables = load_tables(record)
        return [scale(record), "", _table(ablation_claims(tables["retrieval"], tables["training"])), "",
                "### Main comparison", "", _table(main_claims(tables["retrieval"], tables["baselines"]))]

    def timing(record):
        m = record["metrics"]
        ratios = pd.DataFrame([
            _claim("IB-GL (SFT) step time / standard SFT step time (target <= 1.05)", m["ratio IB-GL/standard (SFT)"],
                   float("nan"), paper_by(paper, "IB-GL (SFT)"), "reproduced" if m["ratio IB-GL/standard (SFT)"] <= 1.05 else "not reproduced"),
            _claim("IB-GL (PT) step time / standard PT step time", m["ratio IB-GL/standard (PT)"], float("nan"),
                   paper_by(paper, "IB-GL (PT)"), "(reported)")])
        return [_table(ratios)]

    lines = ["# Reproduction report", "",
             "Every number on this page is read from a results file by `lbr_utils.report.reproduction_page`; "
             "a test regenerates the page and fails if it differs. A claim is judged on per-seed paired "
             "differences: *reproduced* when every seed has the paper's sign, *partly* when only the mean "
             "does, *not reproduced* otherwise. \"ours\" and \"paper\" are differences in points (x100) "
             "unless the claim names a ratio; \"± std\" is the standard deviation of ours over the seeds (or "
             "the units a survey claim names), empty where there is one.", ""]
    lines += _section("Learn Before Represent: stages (chapter 5a)", "lbr_stages", profile, stages)
    lines += _section("Learn Before Represent: ablations (chapter 5b)", "lbr_ablations", profile, ablations)
    lines += _section("Learn Before Represent: training step time", "bench_ib_gl", profile, timing)
    lines += survey_section(profile)
    lines += cost_section(profile)
    return "\n".join(lines).rstrip() + "\n"


def survey_section(profile: str) -> list[str]:
    """The survey claims of chapters 2-4, 6 and 7, with the provenance of every results file they read."""
    from .results import load_results, provenance_line

    records = {}
    for experiment in ("pooling", "contrastive", "baselines", "synthetic", "compression", "inversion"):
        try:
            records[experiment] = load_results(experiment, profile)
        except FileNotFoundError:
            continue
    claims = survey_claims(records)
    if claims.empty:
        return ["## The survey's claims (chapters 2-4, 6, 7)", "", f"Not run yet in profile `{profile}`.", ""]
    return ["## The survey's claims (chapters 2-4, 6, 7)", "",
            "The survey states directions, not numbers, so there is no paper column: \"ours\" is the difference "
            "the claim predicts to be positive (negative for anisotropy), over \"units\" paired comparisons. "
            "Chapters 2-4, 6 and 7 ran one seed, so a verdict on one unit is a single observation, not a test.", "",
            *[f"- {provenance_line(r)}" for r in records.values()], "", _table(claims), ""]


# DESIGN.md's budget for the cpu profile on two cores.
BUDGET = {"study_s": 3 * 3600, "notebook_s": 45 * 60, "memory_mib": 8 * 1024}


def cost_table(rows: list[dict]) -> pd.DataFrame:
    """What each chapter cost in its last reproduce run, against the budget (minutes, GiB). A row
    with a ``note`` (e.g. a rerun from the model cache) is not judged: its time is not the cost."""
    def judged(r: dict) -> str | None:
        if r.get("note"):
            return None
        return "yes" if r["wall_time_s"] <= BUDGET["notebook_s"] and r["peak_memory_mib"] <= BUDGET["memory_mib"] else "no"

    return pd.DataFrame([{"notebook": r["notebook"], "wall time (min)": r["wall_time_s"] / 60,
                          "peak memory (GiB)": r["peak_memory_mib"] / 1024, "within budget": judged(r),
                          "note": r.get("note")} for r in rows])


def cost_section(profile: str) -> list[str]:
    """The cost table a reader checks before running a chapter."""
    from .results import load_results

    try:
        rows = load_results("notebook_costs", profile)["metrics"]
    except FileNotFoundError:
        return []
    total = sum(r["wall_time_s"] for r in rows)
    return ["## What each chapter costs", "",
            f"Wall time and peak memory of each notebook's last `python -m lbr_utils.reproduce --profile {profile}` "
            f"run, read from `results/{profile}/notebook_costs.json`, against DESIGN.md's budget (a notebook <= "
            f"{BUDGET['notebook_s'] // 60} min and <= {BUDGET['memory_mib'] // 1024} GiB; the study <= "
            f"{BUDGET['study_s'] // 3600} h). Together: {total / 3600:.2f} h.", "", _table(cost_table(rows)), ""]


def paper_by(paper: dict, model: str) -> float:
    """The paper's Table 6 relative training time of ``model``."""
    return next(r["time"] for r in paper["table6_styles"]["rows"] if r["model"] == model)


def main() -> None:
    import argparse

    from .results import REPO_ROOT

    parser = argparse.ArgumentParser(description="Rewrite book/reproduction.md from the results files.")
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args()
    (REPO_ROOT / PAGE).write_text(reproduction_page(args.profile))


if __name__ == "__main__":
    main()
