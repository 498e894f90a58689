"""Chapter 5a's experiments: the paper's stage ablation (Table 3), representation vs generation
(Table 2) and the separation ratio, on every domain and seed.

Table 3's embedding is the same one for every row, LBR's: the last bottleneck token's state after
``[x, B]`` (bottleneck tokens are added, untrained, to models whose stage 1 had none; our choice, so
that the rows differ only in what came before). The models without a stage 2 are also read by their
mean and last token, the CL-only arms by the readouts training can shape, and MiniLM and BM25 are
the practitioner's alternatives. The paper's question: does learning the domain through the
bottleneck first make a better embedder than contrastive learning alone, or than ordinary generative
learning?
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..data import DomainSplits, load_domain
from ..lbr import RATIO, ContrastiveConfig, GenerativeConfig, configs, max_length
from ..profiles import Profile, get_profile, lbr_profile
from ..results import load_tables, paper_numbers, save_results, timer
from ..stats import (FLAT_GAIN, claim_family, each_run_once, fmt, holds_across_seeds, interval, judged_claim,
                     late_groups, loss_change, mean_std, per_query_differences, quarter_gain_table, quarter_gains, spearman,
                     to_decide, unconverged, verdict_counts, verdict_lines)
from ._lbr_cells import BASELINES, collect, run_baseline, run_cell, scale_line

NAME = __name__.rpartition(".")[2]
TITLE = "Learn Before Represent: stages (chapter 5a)"
TABLE2 = ("LLM", "LLM+GL", "LLM+IB-GL", "LLM+CL")  # the models whose generation Table 2 scores
GENERATION_DOMAIN = "medical"  # Table 2 is one domain in the paper (its IB-GL NDCG@10 is Table 3's medical)
LBR_DOMAINS = ("medical", "code")  # where the paper prints Table 3; chemistry only if the budget allows
LBR = "LLM+IB-GL+CL"
EQUAL = " @ equal steps"  # a CL-only run as many optimizer steps long as LBR's two stages together
DATA_MATCHED = "LLM+CL (GL+CL pairs)"  # CL alone on every labelled pair LBR's two stages see
# The CL-only LLM arms whose readout training can shape, at equal steps: the headline's competitors.
CL_ONLY = ("LLM+CL" + EQUAL, "LLM+CL (last token)" + EQUAL, DATA_MATCHED + EQUAL)
SNAPSHOTTED = ("LLM+CL", "LLM+CL (last token)")  # CL-only runs also scored at the paper's budget (:func:`arms`)
TABLE3 = ["LLM", "LLM+GL", "LLM+IB-GL", "LLM+CL", "LLM+GL+CL", LBR]
READOUTS = ["LLM", "LLM (last token)", "LLM (mean)", "LLM+GL", "LLM+GL (last token)", "LLM+GL (mean)", "LLM+IB-GL"]
MAIN = [LBR, *CL_ONLY, "LLM+CL (mean)", *BASELINES, *(f"{b} (256 tokens)" for b in BASELINES[1:])]
NATIVE_LENGTH = 256  # all-MiniLM-L6-v2's own limit: the practitioner's MiniLM reads this much
NAN = float("nan")
# The paper-protocol claims: (A, B, the claim, the sign of A - B the paper reports, the domains where
# the paper makes it; None: every domain it prints). "GL first hurts" is stated for medical only, and
# "IB-GL alone beats CL alone" is Table 2's (medical).
STAGE_CLAIMS = [("LLM+IB-GL", "LLM+GL", "IB-GL beats standard GL before any contrastive learning", +1, None),
                (LBR, "LLM+CL", "IB-GL first beats contrastive learning alone", +1, None),
                (LBR, "LLM+GL+CL", "IB-GL first beats standard GL first", +1, None),
                ("LLM+GL+CL", "LLM+CL", "standard GL first hurts contrastive learning", -1, ("medical",)),
                ("LLM+IB-GL", "LLM+CL", "IB-GL alone beats contrastive learning alone (Table 2)", +1, ("medical",))]
# "IB-GL keeps GL's generation" is non-inferiority: at most this many points (ROUGE-L, BLEU-4) worse.
# Fixed before any run, the book's margin for every "as good as" claim (chapters 3 and 4 use 2 NDCG@10).
GENERATION_MARGIN = 2.0
KEEPS = "IB-GL keeps GL's generation "
HEADLINE = "LBR at equal steps against contrastive-only LLM embedders"
DEV_COLUMN = "its dev NDCG@10"  # a headline row's competitor on dev (x100): what picked the best
GENERATION = "Table 2: generation (ROUGE-L and BLEU-4 points)"
PRACTICAL = "LBR against the naive reference and what a practitioner would use"


@dataclass(frozen=True)
class Arm:
    """One LLM model of the chapter: its stage-1 and stage-2 configs, the stage-2 steps at which it is
    also scored (``snapshots``), the pairs stage 2 trains on, and a readout other than its own."""

    name: str
    stage1: GenerativeConfig | None
    stage2: ContrastiveConfig | None
    snapshots: tuple[int, ...] = ()
    cl_data: str = "cl"
    readout: str | None = None


def arms(profile: Profile, seed: int) -> list[Arm]:
    """Every LLM model of one (domain, seed).

    * Table 3's six, all read at the last bottleneck token (the paper's protocol: every model gets the
      same stage-2 steps).
    * CL alone at equal steps: as many stage-2 steps as LBR's two stages together (one run with a
      flat learning rate, scored at both step counts), read at the bottleneck with trainable rows
      (LBR's architecture) or at the last token (what most LLM embedders read); and trained on the GL
      and CL pairs together (the labelled data LBR's two stages see). Mean pooling is the naive
      reference, at the paper's budget.
    * The models without stage 2 read at the last token and the mean too: LLM and GL never trained
      their bottleneck rows, so their bottleneck reading may undersell them.
    """
    stage1, stage2 = configs(profile, seed)
    gl = replace(stage1, bottleneck=False)
    long = replace(stage2, steps=stage1.steps + stage2.steps)
    return [Arm("LLM", None, None), Arm("LLM+GL", gl, None), Arm("LLM+IB-GL", stage1, None),
            Arm(LBR, stage1, stage2), Arm("LLM+CL", None, long, (stage2.steps,)), Arm("LLM+GL+CL", gl, stage2),
            Arm("LLM+CL (last token)", None, replace(long, pooling="last"), (stage2.steps,)),
            Arm(DATA_MATCHED, None, long, cl_data="gl+cl"), Arm("LLM+CL (mean)", None, replace(stage2, pooling="mean")),
            *(Arm(f"{start} ({name})", s1, None, readout=pooling) for start, s1 in [("LLM", None), ("LLM+GL", gl)]
              for name, pooling in [("last token", "last"), ("mean", "mean")])]


def compute_seconds(training: list[dict]) -> float:
    """What the training runs behind a chapter's cells took, each counted once (:func:`each_run_once`)."""
    return float(each_run_once(pd.DataFrame(training)).seconds.sum()) if training else 0.0


def arm_cell(profile: Profile, domain: str, seed: int, name: str, label: str | None = None,
             show_progress: bool = False) -> dict[str, list]:
    """The cell of one of :func:`arms` by name, exactly as this chapter runs it (so chapter 5b reads
    the same cached model), under ``label`` if given."""
    [arm] = [a for a in arms(profile, seed) if a.name == name]
    return run_cell(profile, domain, seed, name, arm.stage1, arm.stage2,
                    generate=name in TABLE2 and domain == GENERATION_DOMAIN, snapshots=arm.snapshots,
                    cl_data=arm.cl_data, readout=arm.readout, show_progress=show_progress) | {"name": label or name}


def run_one(profile: Profile, domain: str, seed: int, show_progress: bool = False) -> dict[str, list]:
    """Every model of one (domain, seed): the LLM arms, and the practitioner's baselines (MiniLM read
    at the LLM's text length and at its own); generation scored for Table 2's four on its domain."""
    stage1, stage2 = configs(profile, seed)
    steps = stage1.steps + stage2.steps
    cells = [arm_cell(profile, domain, seed, arm.name, show_progress=show_progress) for arm in arms(profile, seed)]
    cells += [run_baseline(profile, domain, seed, kind, steps=steps) for kind in BASELINES]
    cells += [run_baseline(profile, domain, seed, kind, steps=steps, length=NATIVE_LENGTH) for kind in BASELINES[1:]]
    return collect(cells, domain=domain, seed=seed)


def compression_table(profile: Profile, splits: Mapping[str, DomainSplits], seed: int,
                      ratios: Sequence[float] = (RATIO,)) -> list[dict]:
    """How hard the fixed bottleneck squeezes the texts it reads, per domain of ``splits`` and ratio.
    k is set by the nominal ratio r and the longest input L (k = ceil((L + 1) / r): the formula keeps
    room for a BOS, which SmolLM2's tokenizer does not add); a text of n tokens (its BOS counted where
    there is one) is squeezed by n / k. Stage-1 inputs are questions, mostly far shorter than L: the
    effective ratio there is the figure to compare with the paper's r."""
    from transformers import AutoTokenizer

    from ..models import resolve_model_path
    from ..pooling import bos_ids, token_ids

    tok = AutoTokenizer.from_pretrained(resolve_model_path(profile.model))
    length = max_length(profile)
    rows = []
    for domain, split in splits.items():
        for what, texts in [("stage-1 inputs (GL questions)", [r.question for r in split.gl]),
                            ("evaluation queries", list(split.eval.queries.values())),
                            ("evaluation documents", list(split.eval.corpus.values()))]:
            n = float(np.median([len(bos_ids(tok)) + min(length, len(token_ids(tok, t))) for t in texts]))
            for ratio in ratios:
                k = configs(profile, seed, ratio)[1].pooling.k
                rows.append({"domain": domain, "texts": what, "median tokens": n, "r": ratio, "k": k,
                             "effective ratio n / k": n / k})
    return rows


def split_sizes(splits: Mapping[str, DomainSplits]) -> list[dict]:
    """The records each split holds per domain (the code domain is smaller than the profile asks:
    its splits are sized to fit), so a run's steps can be read as epochs of what it trained on."""
    return [{"domain": domain, "gl": len(s.gl), "cl": len(s.cl), "dev": len(s.dev.queries) if s.dev else 0,
             "eval queries": len(s.eval.queries), "corpus": len(s.eval.corpus)} for domain, s in splits.items()]


def exposure(training: pd.DataFrame, splits: pd.DataFrame, config: dict) -> pd.DataFrame:
    """How often each LLM run saw its training split (steps x batch / split size, median over seeds)
    and where its loss ended against chance: ln of the candidates a stage-2 query chooses among (the
    batch). A loss far below chance on pairs seen several times means the in-batch task is solved on
    the training pairs; only the dev curve says whether that still helps. Stage 1 has no dev curve:
    by the study's rule it trains for one epoch of the GL split, whatever its loss is still doing."""
    sizes = splits.set_index("domain")
    llm = each_run_once(training[training.model.str.startswith("LLM")])
    rows = []
    for r in llm.itertuples():
        stage = config[f"stage{r.stage}"]
        split = "gl" if r.stage == 1 else "gl + cl" if r.model == DATA_MATCHED else "cl"
        n = sum(int(sizes.loc[r.domain, part]) for part in split.split(" + "))
        rows.append({"domain": r.domain, "stage": r.stage, "model": r.model, "trained on": split, "steps": r.steps,
                     "epochs": r.steps * stage["batch_size"] / n, "final loss": r.final_loss,
                     "loss change, 3rd to 4th quarter": loss_change(r.loss_curve),
                     "chance (ln batch)": np.log(stage["batch_size"]) if r.stage == 2 else np.nan})
    table = pd.DataFrame(rows)
    return table.groupby(["domain", "stage", "model", "trained on"], sort=False).median(numeric_only=True).round(2)


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
    splits = {domain: load_domain(domain, profile, seeds[0]) for domain in domains}
    out["compression"] = compression_table(profile, splits, seeds[0])
    out["splits"] = split_sizes(splits)
    stage1, stage2 = configs(profile, seeds[0])
    config = {"profile": profile.to_dict(), "domains": list(domains), "stage1": stage1.__dict__,
              "stage2": stage2.to_dict(), "n_generate": profile.n_generate, "generation_domain": GENERATION_DOMAIN,
              "embedding": f"last of {stage2.pooling.k} bottleneck tokens (nominal r={RATIO:g} of L = "
                           f"{max_length(profile)} tokens), causal attention",
              # What the cells cost when they were computed (a split or resumed run reads them back).
              "compute_seconds": compute_seconds(out.get("training", []))}
    save_results(NAME, profile_name, out, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in out.items()}


def with_arms(retrieval: pd.DataFrame, config: dict) -> pd.DataFrame:
    """The retrieval rows with an ``arm`` column: a CL-only model's longer run is its own arm,
    "... @ equal steps" (as many optimizer steps as LBR's two stages together)."""
    total = config["stage1"]["steps"] + config["stage2"]["steps"]
    longer = retrieval.model.str.startswith("LLM+CL") & (retrieval.steps == total) & (retrieval.stage1_steps == 0)
    return retrieval.assign(arm=retrieval.model.where(~longer, retrieval.model + EQUAL))


def score_table(retrieval: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    """Mean ± std over seeds of NDCG@10 (x100) per arm and domain, in ``arms`` order."""
    summary = mean_std(retrieval[retrieval.arm.isin(arms)], ["domain", "arm"])
    return summary.apply(lambda r: fmt(r["mean"], r["std"]), axis=1).unstack("domain").reindex(arms)


def dev_scores(training: pd.DataFrame, domain: str, arms, steps: int) -> dict[str, float]:
    """Each CL-only arm's dev NDCG@10 at ``steps`` (mean over seeds), for the arms that have one."""
    runs = training[(training.stage == 2) & (training.domain == domain)]
    return {arm: float(np.mean(dev)) for arm in arms
            if (dev := [p["dev NDCG@10"] for r in runs[runs.model == arm.removesuffix(EQUAL)].itertuples()
                        for p in r.dev_curve if int(p["step"]) == steps])}


def best_on_dev(training: pd.DataFrame, domain: str, arms, steps: int) -> str:
    """Of the CL-only ``arms`` (at equal steps), the one with the highest dev NDCG@10 at ``steps``
    (:func:`dev_scores`). Chosen on the dev split, entity-disjoint from evaluation, so the evaluation
    queries that then judge LBR against it played no part in choosing it (no winner's curse)."""
    if not (scores := dev_scores(training, domain, arms, steps)):
        raise ValueError(f"no CL-only run of {domain} has a dev score at step {steps}: nothing to pick the best from")
    return max(scores, key=scores.get)


def stage_claims(retrieval: pd.DataFrame, late: set[tuple[str, str]] = frozenset()) -> pd.DataFrame:
    """Table 3's claims per domain, at the paper's protocol (equal stage-2 steps), one Holm family.
    ``late`` holds the (domain, arm) pairs far from convergence: their claims are not judged."""
    paper = {r["model"]: r for r in paper_numbers()["table3_stages"]["rows"]}
    rows = []
    for a, b, text, sign, where in STAGE_CLAIMS:
        for domain in sorted(set(retrieval.domain) & set(where or retrieval.domain)):
            diffs = per_query_differences(retrieval[retrieval.domain == domain], a, b, column="arm")
            row = judged_claim(text, diffs, sign, paper[a].get(domain, NAN) - paper[b].get(domain, NAN),
                               domain=domain, a=a, b=b)
            rows.append(unconverged(row, {arm for d, arm in late if d == domain}))
    # GL's bottleneck rows never trained: IB-GL must also beat GL read the two ways that need no training
    for gl in ("LLM+GL (mean)", "LLM+GL (last token)"):
        for domain in sorted(retrieval.domain.unique()):
            rows.append(judged_claim(f"IB-GL beats standard GL read by its {gl.split('(')[1][:-1]}",
                                     per_query_differences(retrieval[retrieval.domain == domain], "LLM+IB-GL", gl,
                                                           column="arm"), +1, domain=domain, a="LLM+IB-GL", b=gl))
    return claim_family(rows)


def equal_compute_claims(retrieval: pd.DataFrame, training: pd.DataFrame, steps: int,
                         late: set[tuple[str, str]] = frozenset()) -> dict[str, pd.DataFrame]:
    """LBR against the alternatives, per domain, as two Holm families. The headline family: every
    CL-only LLM arm trained with as many optimizer steps (``steps``) as LBR's two stages, the best on
    dev first (:func:`best_on_dev`). The practical family: mean pooling (the naive reference, at the
    paper's budget), BM25, and MiniLM as is and fine-tuned on the same pairs."""
    families: dict[str, list] = {HEADLINE: [], PRACTICAL: []}
    for domain in sorted(retrieval.domain.unique()):
        scores = retrieval[retrieval.domain == domain]
        present = [m for m in CL_ONLY if m in set(scores.arm)]
        best, dev = best_on_dev(training, domain, present, steps), dev_scores(training, domain, present, steps)
        for family, others in [(HEADLINE, [best] + [m for m in present if m != best]),
                               (PRACTICAL, [m for m in MAIN if m not in (LBR, *CL_ONLY) and m in set(scores.arm)])]:
            for other in others:
                fewer = int(steps - scores[scores.arm == other].steps.max())
                text = f"LBR beats {other}" + {best: " (the best CL-only LLM on dev)",
                                               "LLM+CL (mean)": f" (the paper's budget: {fewer} steps fewer than LBR)"
                                               }.get(other, "")
                picked = {DEV_COLUMN: round(100 * dev[other], 2)} if family == HEADLINE and other in dev else {}
                row = judged_claim(text, per_query_differences(scores, LBR, other, column="arm"), +1,
                                   domain=domain, a=LBR, b=other, **picked)
                families[family].append(unconverged(row, {arm for d, arm in late if d == domain}))
    return {title: claim_family(rows) for title, rows in families.items()}


def generation_claims(generation: pd.DataFrame) -> pd.DataFrame:
    """Table 2's generation claims, per question (ROUGE-L and sentence BLEU-4, points), one family.
    "Keeps" is non-inferiority: IB-GL at most ``GENERATION_MARGIN`` points worse than GL."""
    paper = {r["model"]: r for r in paper_numbers()["table2_repr_gen"]["rows"]}
    rows = []
    for metric in ("ROUGE-L", "BLEU-4"):
        per = generation.assign(per_question=generation[f"{metric} per question"])
        margin = GENERATION_MARGIN
        # The paper's BLEU-4 is a corpus score, ours per question (sentence BLEU): not comparable, so
        # no "paper in CI" for it. Mean per-question ROUGE-L is the corpus ROUGE-L: comparable.
        paper_diff = (lambda a, b: paper[a][metric] - paper[b][metric]) if metric == "ROUGE-L" else (lambda a, b: None)
        rows.append(judged_claim(f"{KEEPS}({metric}, at most {margin:g} points worse)",
                                 per_query_differences(per, "LLM+IB-GL", "LLM+GL", value="per_question"), +1,
                                 paper_diff("IB-GL", "GL"), scale=1.0, margin=margin))
        rows.append(judged_claim(f"GL generates better than the base model ({metric})",
                                 per_query_differences(per, "LLM+GL", "LLM", value="per_question"), +1,
                                 paper_diff("GL", "Base"), scale=1.0))
    return claim_family(rows)


def convergence(training: pd.DataFrame, snapshot_steps: int) -> pd.DataFrame:
    """Every stage-2 run's dev NDCG@10 gain (x100) over the last quarter of its steps
    (:func:`lbr_utils.stats.quarter_gains`: its mean, and the per-query gains that
    :func:`late_arms` judges with). A run whose mean gain is below ``FLAT_GAIN`` has flattened. The
    CL-only runs scored at the paper's budget too (:data:`SNAPSHOTTED`) are also judged at it (the
    paper-protocol model each serves as; its learning rate is flat, so that model is a finished
    shorter run). A run whose curve cannot show its last quarter gets no gains: no evidence is no
    convergence."""
    rows = []
    for r in training[training.stage == 2].itertuples():
        ends = {r.steps} | ({snapshot_steps} if r.model in SNAPSHOTTED and snapshot_steps else set())
        for end in sorted(ends):
            start, final, gains = quarter_gains(r.dev_curve, end) or (NAN, NAN, None)
            gain = float("inf") if gains is None else float(gains.mean())
            rows.append({"model": r.model, "domain": r.domain, "seed": r.seed, "steps": end, "from step": start,
                         "dev NDCG@10 (x100)": final, "last-quarter gain": gain, "flattened": gain < FLAT_GAIN,
                         "gains": gains})
    return pd.DataFrame(rows, columns=["model", "domain", "seed", "steps", "from step", "dev NDCG@10 (x100)",
                                       "last-quarter gain", "flattened", "gains"])


def convergence_summary(conv: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """What a chapter shows of :func:`convergence`: per group (e.g. domain, model, steps), the dev
    NDCG@10 reached (mean over seeds), the mean last-quarter gain with its 95% CI, and the two
    readings of it (:func:`lbr_utils.stats.quarter_gain_table`)."""
    out = conv.groupby(by)["dev NDCG@10 (x100)"].mean().round(1).reset_index().merge(quarter_gain_table(conv, by), on=by)
    out["last-quarter gain [95% CI]"] = [
        "no curve" if np.isinf(r["gain"]) else f"{r['gain']:+.1f} [{r['gain CI low']:+.1f}, {r['gain CI high']:+.1f}]"
        for r in out.to_dict(orient="records")]
    return out.set_index(by)[["dev NDCG@10 (x100)", "last-quarter gain [95% CI]", "flattened", "far from convergence"]]


def late_arms(training: pd.DataFrame, config: dict) -> set[tuple[str, str]]:
    """(domain, arm) pairs far from convergence (:func:`lbr_utils.stats.late_groups`): no claim about
    them is judged."""
    conv = arm_convergence(training, config)
    return set() if conv.empty else late_groups(conv, ("domain", "arm"))


def arm_convergence(training: pd.DataFrame, config: dict) -> pd.DataFrame:
    """:func:`convergence` with each run named as the arm the claims compare (a CL-only run at LBR's
    total steps is its "@ equal steps" arm)."""
    stage2, total = config["stage2"]["steps"], config["stage1"]["steps"] + config["stage2"]["steps"]
    conv = convergence(training, stage2)
    return conv.assign(arm=conv.model.where(~(conv.model.str.startswith("LLM+CL") & (conv.steps == total)),
                                            conv.model + EQUAL))


def rest_on_climbing_arms(record: dict) -> list[dict]:
    """The decided claims (reproduced or contradicted) that compare an arm which has not flattened
    (mean last-quarter gain of at least ``FLAT_GAIN``) though it is not far from convergence either:
    the verdicts the convergence gate's middle ground lets through, to be read with that in mind."""
    tables = load_tables(record)
    conv = arm_convergence(tables["training"], record["config"])
    gains = conv.groupby(["domain", "arm"])["last-quarter gain"].mean()
    climbing = {key for key, gain in gains.items() if gain >= FLAT_GAIN}
    return [r for table in judged(record).values() for r in table.to_dict(orient="records")
            if r["verdict"] in ("reproduced", "contradicted")
            and any((r.get("domain"), arm) in climbing for arm in _compared(r))]


def _compared(row: dict) -> tuple:
    """The arms a claim row compares: its ``arms`` (a difference of differences) or ``a`` and ``b``."""
    arms = row.get("arms")
    return tuple(arms) if isinstance(arms, (list, tuple)) else (row.get("a"), row.get("b"))


def generation_story(record: dict) -> str:
    """Why IB-GL generates differently from GL, in this run's numbers: the ROUGE-L difference with its
    CI, the two stage-1 losses at the end of training (does hiding the question make the answer
    harder to predict?), and how hard the bottleneck squeezes a question (the effective ratio). Every
    clause follows the numbers; none is written in advance."""
    tables = load_tables(record)
    [rouge] = [r for r in judged(record)[GENERATION].itertuples() if r.claim.startswith(KEEPS + "(ROUGE-L")]
    stage1 = tables["training"].query("stage == 1 and domain == @GENERATION_DOMAIN")
    loss = stage1.groupby("model").final_loss.mean()
    ib, gl = loss["LLM+IB-GL"], loss["LLM+GL"]
    squeeze = tables["compression"].query("domain == @GENERATION_DOMAIN").set_index("texts")
    q = squeeze.loc["stage-1 inputs (GL questions)"]
    harder = ("with the question hidden from the answer, the same stage-1 steps leave the answer harder to predict"
              if ib > gl else "hiding the question did not leave the answer harder to predict on the training data")
    return (f"IB-GL's answers score {rouge.ours:+.1f} ROUGE-L points [{rouge.ci_low:+.1f}, {rouge.ci_high:+.1f}] "
            f"against GL's ({rouge.verdict} against the {GENERATION_MARGIN:g}-point margin). Its stage-1 loss ended at "
            f"**{ib:.2f}** against GL's **{gl:.2f}** (mean of the last steps, over seeds): {harder}. A median "
            f"question of {q['median tokens']:.0f} tokens is held by k = {q['k']:.0f} states (effective "
            f"ratio {q['effective ratio n / k']:.1f}); whether more room would help is chapter 5b's ratio sweep.")


def separation_prediction(separation: pd.DataFrame, retrieval: pd.DataFrame) -> pd.DataFrame:
    """Does the separation ratio after stage 1 predict NDCG@10 after stage 2? One row per start
    model, domain and seed, joined with the score its stage 2 reached (at the paper's protocol)."""
    final = retrieval[retrieval.arm.isin(["LLM+CL", "LLM+GL+CL", LBR])]
    final = final.assign(start=final.arm.str.removesuffix("+CL"))[["start", "domain", "seed", "score"]]
    return separation.merge(final, left_on=["model", "domain", "seed"], right_on=["start", "domain", "seed"])


def separation_table(separation: pd.DataFrame, retrieval: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of the separation ratio after stage 1 with NDCG@10 after stage 2, over
    all (start model, domain, seed) points and within each domain."""
    joined = separation_prediction(separation, retrieval)
    rows = [{"points": "all", "n": len(joined), "Spearman": spearman(joined.separation_ratio, joined.score)}]
    rows += [{"points": domain, "n": len(g), "Spearman": spearman(g.separation_ratio, g.score)}
             for domain, g in joined.groupby("domain")]
    return pd.DataFrame(rows)


def judged(record: dict) -> dict[str, pd.DataFrame]:
    """Every claim family of the chapter, judged (raw numbers: for the page's prose and the report)."""
    tables = load_tables(record)
    retrieval = with_arms(tables["retrieval"], record["config"])
    late = late_arms(tables["training"], record["config"])
    steps = record["config"]["stage1"]["steps"] + record["config"]["stage2"]["steps"]
    out = {"Table 3: stages (paper protocol: equal stage-2 steps)": stage_claims(retrieval, late)}
    out |= equal_compute_claims(retrieval, tables["training"], steps, late)
    if "generation" in tables:
        out[GENERATION] = generation_claims(tables["generation"])
    return out


def summary(record: dict) -> str:
    """"What this shows", from the judged claims: in brief (:func:`summary_lines`), then every verdict.
    Every number comes from the results record."""
    every = [line for title, table in judged(record).items()
             for line in verdict_lines(table, " points" if title == GENERATION else " NDCG@10 points")]
    return "\n".join(["**In brief.**", "", *summary_lines(record), "", "**Every verdict.**", "", *every])


def each_arm(rows: list[dict], domain: str) -> str:
    """LBR's difference against every CL-only arm of one domain, lowest to highest: the best-on-dev
    pick can hinge on a dev tie, so the headline is quoted beside the whole family."""
    rows = sorted((r for r in rows if r["domain"] == domain and not pd.isna(r["ours"])), key=lambda r: r["ours"])
    return ", ".join(f"{r['ours']:+.1f} ({r['verdict']}) against {r['b']}" for r in rows)


def summary_lines(record: dict) -> list[str]:
    """What the chapter shows, in a few plain bullets with their numbers (NDCG@10 points, 95% CI):
    what held, what the paper claims that we did not see, the headline, what a practitioner would use
    instead, generation, and what these runs cannot say. Read by the page and the report alike."""
    tables = judged(record)
    rows = {title: table.to_dict(orient="records") for title, table in tables.items()}
    stages = rows["Table 3: stages (paper protocol: equal stage-2 steps)"]
    flip = lambda r: " (could flip on a rerun: its seed interval holds 0)" if holds_across_seeds(r) is False else ""
    said = lambda r: f"{r['domain']}: {r['verdict']}, {interval(r)}{flip(r)}{to_decide(r)}"
    before = [r for r in stages if r["claim"].startswith("IB-GL beats standard GL")]
    after = [r for r in stages if r["claim"].startswith(("IB-GL first", "standard GL first"))]
    paper = [r for r in stages if not pd.isna(r["paper"])]
    best = " (the best CL-only LLM on dev)"
    def runner_up(r: dict) -> str:
        others = sorted((o[DEV_COLUMN] for o in rows[HEADLINE] if o["domain"] == r["domain"] and o is not r),
                        reverse=True)
        return f" (picked on dev: {r[DEV_COLUMN]:.1f} against the next arm's {others[0]:.1f})" if others else ""
    heads = [f"{r['domain']}: {r['verdict']}, {interval(r)} against {r['b']}{runner_up(r)}{flip(r)}{to_decide(r)}; "
             f"against each CL-only LLM, "
             f"{each_arm(rows[HEADLINE], r['domain'])}" for r in rows[HEADLINE] if r["claim"].endswith(best)]
    practical = {name: [said(r) for r in rows[PRACTICAL] if r["claim"] == f"LBR beats {name}"]
                 for name in ("MiniLM", "MiniLM+CL", "BM25")}
    squeeze = pd.DataFrame(record["metrics"]["compression"])
    squeeze = squeeze[squeeze.texts.str.startswith("stage-1")].set_index("domain")["effective ratio n / k"]
    readings = "; ".join(f"{said(r)} ({r['claim'].removeprefix('IB-GL beats standard GL ')})" for r in before)
    added = "; ".join(f"{r['claim']} ({said(r)})" for r in after)
    inside = sum(bool(r["paper_in_ci"]) for r in paper)
    lines = [f"- **IB-GL against standard GL, before contrastive learning** (the bottleneck's own effect): {readings}.",
             f"- **What the stages add once contrastive learning follows:** {added}. The paper's own difference lies "
             f"inside our CI for {inside} of the {len(paper)} stage claims it gives a number for.",
             f"- **The headline, at equal steps LBR against the best contrastive-only LLM embedder:** {'; '.join(heads)}.",
             *(f"- **LBR against {name}** (what a practitioner would {'train' if name.endswith('CL') else 'use'} "
               f"instead): {'; '.join(found)}." for name, found in practical.items() if found)]
    if GENERATION in rows:
        lines.append("- **Does IB-GL keep GL's generation?** " + "; ".join(
            f"{r['claim'].removeprefix(KEEPS)}: {r['verdict']}, {interval(r)}" for r in rows[GENERATION]
            if r["claim"].startswith(KEEPS)) + ".")
    if climbing := rest_on_climbing_arms(record):
        lines.append("- **Read with care:** " + "; ".join(f"{r['claim']} ({r['domain']}: {r['verdict']})" for r in climbing)
                     + f" compare{'s' * (len(climbing) == 1)} an arm whose dev curve had not flattened (a mean "
                       f"last-quarter gain of {FLAT_GAIN:g} point or more): more training could move "
                       f"{'it' if len(climbing) == 1 else 'them'}.")
    tabs = load_tables(record)
    stage1 = exposure(tabs["training"], tabs["splits"], record["config"]).xs(1, level="stage")
    change = stage1["loss change, 3rd to 4th quarter"]
    lines.append(f"- **What these runs cannot say:** stage 1 trained {stage1.epochs.min():.0f} epoch{'s' * (round(stage1.epochs.min()) != 1)} of its split, "
                 f"its loss still moving by {change.min():+.2f} to {change.max():+.2f} nats from the third quarter to "
                 f"the fourth, so the claims that rest on stage 1 alone are about that much training; and "
                 f"the bottleneck squeezed a stage-1 question by only "
                 f"{', '.join(f'{v:.1f} ({d})' for d, v in squeeze.items())}, not by the nominal r = {RATIO:g}: "
                 f"this scale tests the mask far more than compression (chapter 5b sweeps r).")
    return lines


def synthesis(record: dict) -> str:
    """The report's opening words on this chapter: its verdict counts, then :func:`summary_lines`."""
    domains = ", ".join(record["config"]["domains"])
    return (f"**LBR's stages (chapter 5a; {domains}; seeds {record['provenance']['seeds']}).** "
            f"{verdict_counts(judged(record))}.\n\n" + "\n".join(summary_lines(record)))


def scale_text(record: dict) -> str:
    """:func:`scale_line` with each domain's own split sizes: the code domain's are smaller than the
    profile asks (its splits are sized to fit its records)."""
    sizes = "; ".join(f"{s['domain']}: {s['gl']:,} GL / {s['cl']:,} CL records, {s['eval queries']:,} evaluation "
                      f"queries" for s in record["metrics"]["splits"])
    line = scale_line(record)
    start, end = line.index("`,") + 2, line.index(" per domain,")
    return f"{line[:start]} {sizes}; {line[end + len(' per domain, '):]}"


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    record = records[NAME]
    tables = load_tables(record)
    out = {"scale": scale_text(record)}
    out |= judged(record)
    out["The separation ratio (our definition; the paper names it without defining it)"] = \
        separation_table(tables["separation"], with_arms(tables["retrieval"], record["config"]))
    return out
