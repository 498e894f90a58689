"""Chapter 5b: the paper's ablations (Tables 4-6, Figure 3) and the main comparison, on one domain.

Each model is a :func:`lbr_utils.studies._lbr_cells.run_cell`, so a model that chapter 5a already
scored (IB-GL + causal CL, IB-GL at r = 8, standard SFT) is read from the cache, not trained again.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from tqdm.auto import tqdm

from ..data import load_domain
from ..embedders import LLMEmbedder, SentenceTransformerEmbedder
from ..evaluate import BM25, evaluate_models
from ..lbr import configs, max_length
from ..models import load_causal_lm
from ..profiles import Profile, get_profile, lbr_profile
from ..results import load_tables, paper_numbers, provenance_line, save_results, timer
from ..stats import claim_row, paired_claim, paired_differences, spread
from ._lbr_cells import collect, run_cell, scale_line

NAME = __name__.rpartition(".")[2]
TITLE = "Learn Before Represent: ablations (chapter 5b)"
RATIOS = (2.0, 4.0, 8.0, 16.0, 32.0)
GL_SHARES = (0.0, 1 / 3, 2 / 3)  # Figure 3: the share of a fixed step budget given to stage 1


def attention_cells(profile: Profile, domain: str, seed: int) -> list[dict]:
    """Table 4: after GL or IB-GL, the contrastive stage with causal or bidirectional attention."""
    stage1, stage2 = configs(profile, seed)
    return [run_cell(profile, domain, seed, f"{start}+CL ({'causal' if causal else 'bidirectional'})", s1,
                     replace(stage2, causal=causal))
            for start, s1 in [("GL", replace(stage1, bottleneck=False)), ("IB-GL", stage1)] for causal in (True, False)]


def ratio_cells(profile: Profile, domain: str, seed: int) -> list[dict]:
    """Table 5: stage 1 only at each compression ratio, evaluated directly."""
    return [run_cell(profile, domain, seed, f"r={r:g}", configs(profile, seed, r)[0], None) for r in RATIOS]


def style_cells(profile: Profile, domain: str, seed: int) -> list[dict]:
    """Table 6: SFT-style vs PT-style (reconstruction) stage 1, each with and without the bottleneck."""
    stage1, _ = configs(profile, seed)
    return [run_cell(profile, domain, seed, name, replace(stage1, style=style, bottleneck=bottleneck), None)
            for name, style, bottleneck in [("Standard SFT", "sft", False), ("IB-GL (SFT)", "sft", True),
                                            ("Standard PT", "pt", False), ("IB-GL (PT)", "pt", True)]]


def allocation_cells(profile: Profile, domain: str, seed: int) -> list[dict]:
    """Figure 3: a fixed budget of stage-1 + stage-2 steps, split between GL (or IB-GL) and CL."""
    stage1, stage2 = configs(profile, seed)
    budget = 2 * profile.train_steps
    cells = []
    for share in GL_SHARES:
        gl_steps = round(share * budget)
        s2 = replace(stage2, steps=budget - gl_steps)
        for method, bottleneck in [("GL", False), ("IB-GL", True)]:
            s1 = replace(stage1, bottleneck=bottleneck, steps=gl_steps) if gl_steps else None
            if s1 is None and method == "IB-GL":
                continue  # share 0 is plain CL, the same run for both methods
            cell = run_cell(profile, domain, seed, method if s1 else "CL only", s1, s2)
            cells.append({k: [dict(row, gl_share=share) for row in v] if k != "name" else v for k, v in cell.items()})
    return cells


def baseline_rows(profile: Profile, domain: str, seed: int) -> list[dict]:
    """The main table's reference points on the same eval set: BM25, all-MiniLM-L6-v2, and
    the LLM read out by mean and PromptEOL pooling without training (chapter 2's best)."""
    splits = load_domain(domain, profile, seed)
    model, tok = load_causal_lm(profile.model)
    models = {"BM25": BM25, "all-MiniLM-L6-v2": SentenceTransformerEmbedder()}
    for pooling in ("mean", "prompteol"):
        models[f"LLM, {pooling} pooling (untrained)"] = LLMEmbedder(model, tok, pooling=pooling, max_length=max_length(profile),
                                                            bf16=True)
    table = evaluate_models(models, {domain: splits.eval})
    return table.assign(domain=domain, seed=seed).to_dict(orient="records")


def main_cells(profile: Profile, domain: str, seed: int) -> list[dict]:
    """The trained rows of the main table: LLM + CL (mean pooling, chapter 3's recipe) and LBR."""
    stage1, stage2 = configs(profile, seed)
    return [run_cell(profile, domain, seed, "LLM + CL (mean pooling)", None, replace(stage2, pooling="mean")),
            run_cell(profile, domain, seed, "LBR (IB-GL + CL)", stage1, stage2)]


def run(profile_name: str, domain: str = "medical", seeds: tuple[int, ...] | None = None,
                  show_progress: bool = True) -> dict[str, pd.DataFrame]:
    profile = lbr_profile(get_profile(profile_name))
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    parts = {"attention": attention_cells, "ratio": ratio_cells, "style": style_cells,
             "allocation": allocation_cells, "main": main_cells}
    out: dict[str, list] = {}
    with timer() as t:
        for seed in tqdm(seeds, desc="seed", disable=not show_progress):
            for part, make in parts.items():
                for table, rows in collect(make(profile, domain, seed), domain=domain, seed=seed, part=part).items():
                    out.setdefault(table, []).extend(rows)
            out.setdefault("baselines", []).extend(baseline_rows(profile, domain, seed))
    stage1, stage2 = configs(profile, seeds[0])
    config = {"profile": profile.to_dict(), "domain": domain, "ratios": RATIOS, "gl_shares": GL_SHARES,
              "step_budget": 2 * profile.train_steps, "stage1": stage1.__dict__, "stage2": stage2.to_dict()}
    save_results(NAME, profile_name, out, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in out.items()}


def ablation_claims(retrieval: pd.DataFrame, training: pd.DataFrame) -> pd.DataFrame:
    """The claims of Tables 4-6 and Figure 3 from the ablation run (one domain, every seed)."""
    paper = paper_numbers()
    ndcg = retrieval[retrieval.metric == "NDCG@10"]
    part = {name: ndcg[ndcg.part == name] for name in ndcg.part.unique()}
    rows = []
    t4 = {r["stage1"]: r for r in paper["table4_attention"]["rows"]}
    d = paired_differences(part["attention"], "IB-GL+CL (causal)", "IB-GL+CL (bidirectional)")
    rows.append(paired_claim("after IB-GL, causal contrastive learning beats bidirectional (NDCG@10 x100)", d,
                             t4["IB-GL"]["causal"] - t4["IB-GL"]["bidirectional"]))
    ratio = part["ratio"].assign(r=lambda t: t.model.str.removeprefix("r=").astype(float))
    means = ratio.groupby("r").score.mean()
    best = float(means.idxmax())
    rows.append(claim_row("the best compression ratio is interior, neither the mildest nor the harshest (best r)",
                          best, float("nan"), float("nan"), "reproduced" if means.index.min() < best < means.index.max()
                          else "not reproduced"))
    t6 = {r["model"]: r for r in paper["table6_styles"]["rows"]}
    for ib, std in [("IB-GL (SFT)", "Standard SFT"), ("IB-GL (PT)", "Standard PT")]:
        d = paired_differences(part["style"], ib, std)
        rows.append(paired_claim(f"{ib} beats {std} (NDCG@10 x100)", d, t6[ib]["retrieval"] - t6[std]["retrieval"]))
    alloc = part["allocation"]
    d = [x for share in sorted(alloc.gl_share.unique()) if share > 0
         for x in paired_differences(alloc[alloc.gl_share == share], "IB-GL", "GL")]
    rows.append(paired_claim("with a fixed step budget, IB-GL beats GL at every share given to stage 1 (NDCG@10 x100)",
                             d, float("nan")))
    secs = training[(training.part == "style") & (training.stage == 1)].pivot_table(index="seed", columns="model",
                                                                                     values="seconds")
    for ib, std in [("IB-GL (SFT)", "Standard SFT"), ("IB-GL (PT)", "Standard PT")]:
        ratios = secs[ib] / secs[std]
        rows.append(claim_row(f"stage-1 wall time, {ib} / {std}", float(ratios.mean()), spread(ratios, 1.0),
                              t6[ib]["time"], "(timing: see the step-time benchmark)"))
    return pd.DataFrame(rows)


def main_claims(retrieval: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """LBR against the reference points on the same evaluation sets (NDCG@10, paired by seed)."""
    table = pd.concat([baselines, retrieval[retrieval.part == "main"]])
    ndcg = table[table.metric == "NDCG@10"]
    return pd.DataFrame([paired_claim(f"LBR beats {other} (NDCG@10 x100)",
                                      paired_differences(ndcg, "LBR (IB-GL + CL)", other), float("nan"))
                         for other in ["BM25", "all-MiniLM-L6-v2", "LLM + CL (mean pooling)"]])


def step_time_claims(bench: dict) -> pd.DataFrame:
    """Table 6's time column from the controlled step-time benchmark (``benchmarks/bench_ib_gl.py``)."""
    m, paper = bench["metrics"], {r["model"]: r["time"] for r in paper_numbers()["table6_styles"]["rows"]}
    sft, pt = m["ratio IB-GL/standard (SFT)"], m["ratio IB-GL/standard (PT)"]
    return pd.DataFrame([
        claim_row("IB-GL (SFT) step time / standard SFT step time (target <= 1.05)", sft, float("nan"),
                  paper["IB-GL (SFT)"], "reproduced" if sft <= 1.05 else "not reproduced"),
        claim_row("IB-GL (PT) step time / standard PT step time", pt, float("nan"), paper["IB-GL (PT)"], "(reported)")])


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame | str | tuple[str, pd.DataFrame]]:
    if NAME not in records:
        return {}
    tables = load_tables(records[NAME])
    out = {"scale": scale_line(records[NAME]),
           "Tables 4-6 and Figure 3": ablation_claims(tables["retrieval"], tables["training"]),
           "Main comparison": main_claims(tables["retrieval"], tables["baselines"])}
    if "bench_ib_gl" in records:
        out["Training step time (benchmarks/bench_ib_gl.py)"] = (provenance_line(records["bench_ib_gl"]),
                                                                 step_time_claims(records["bench_ib_gl"]))
    return out
