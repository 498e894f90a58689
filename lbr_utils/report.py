"""The "Reproduction report" page, assembled from the chapters' claims.

Each study module judges its own claims (``lbr_utils.studies.<chapter>.claims``) from the results
files; this module only loads those files, asks every chapter for its claim tables and lays them out
with their provenance. It knows no recipe and no claim. The page is never edited by hand:
``python -m lbr_utils.cli.report`` rewrites it, and a test fails when it is stale.
"""

from __future__ import annotations

import pandas as pd

from .profiles import BUDGET
from .results import computed_seconds, load_results, paper_numbers, provenance_line
from .stats import display_claims, verdict_counts
from .studies import CHAPTERS, study

PAGE = "book/reproduction.md"
BENCHMARK_PAGE = "book/benchmarks.md"
BENCHMARKS = ("bench_ib_gl", "benchmarks")  # results files a chapter's claims may read beside its own
INTRO = ("Every number on this page is read from a results file by `lbr_utils.report.reproduction_page`; "
         "a test regenerates the page and fails if it differs. A claim \"A beats B\" is judged on the paired "
         "per-query differences A - B of every seed: a hierarchical bootstrap (resample seeds, then queries "
         "within each seed) gives the 95% CI beside our mean difference (`lbr_utils.stats`). *Reproduced*: the "
         "CI lies on the claim's side of 0 (of -margin for an \"at most m points worse\" claim); *contradicted*: "
         "on the other side; *inconclusive*: it holds 0 (-margin). The "
         "claims under one heading are one family: a verdict stands only if its Holm-adjusted p is below 0.05. "
         "Differences are in points (x100); \"paper in CI\" says whether the paper's own difference lies inside "
         "our CI (a check of size at our scale, not a test of the paper's run); \"holds over seeds\" checks a "
         "decided verdict over the seed means alone (a Student-t interval, `lbr_utils.stats.seed_interval`): with "
         "three seeds the bootstrap's CI is too narrow when seeds disagree, and a \"no: could flip\" is a verdict "
         "a rerun could overturn.")
SURVEY_INTRO = ("The survey states directions, not numbers, so there is no paper column. Each chapter's claims "
                "are judged as above: the paired per-query (per-text, per-example) differences of every seed, a "
                "hierarchical-bootstrap 95% CI, Holm within the chapter's family; a claim about a model far from "
                "convergence (its last-quarter dev gain's 95% CI above a point; chapter 6's QA claims also while "
                "their dev answer loss still falls) is not judged, and one about a model that has not flattened is "
                "marked \"read with care\" (so is one run's gain, which has no CI). Timing claims take their "
                "repeats where the others take seeds. \"source\" says whose claim it is (the survey's, a method "
                "paper's, or ours where the survey's claim is about adapted models).")


def _table(frame: pd.DataFrame) -> str:
    """A table as markdown: numbers to 2 decimals, text (a "0.012" that ``display_claims`` already
    formatted included) as it is."""
    text = [i for i, column in enumerate(frame.columns) if frame[column].map(lambda v: isinstance(v, str)).any()]
    return frame.astype(object).where(frame.notna(), None).to_markdown(index=False, floatfmt=".2f", missingval="–",
                                                                       disable_numparse=text or False)


def load_records(profile: str) -> dict[str, dict]:
    """Every chapter's and benchmark's results record that exists in ``results/<profile>/``."""
    records = {}
    for name in CHAPTERS + BENCHMARKS:
        try:
            records[name] = load_results(name, profile)
        except FileNotFoundError:
            continue
    return records


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """A judged claim family (it carries CIs and Holm's p) as every chapter page shows it; any other
    table as it is."""
    return display_claims(table) if {"ci_low", "ci_high", "p_holm"} <= set(table.columns) else table


def _render(title: str, item: pd.DataFrame | str | tuple[str, pd.DataFrame]) -> list[str]:
    """A chapter's claim table under its title (after a paragraph, given as a pair), or a paragraph."""
    if isinstance(item, str):
        return [item, ""]
    paragraph, table = item if isinstance(item, tuple) else (None, item)
    return [f"### {title}", "", *([paragraph, ""] if paragraph else []), _table(_shown(table)), ""]


def _chapter_numbers(names) -> str:
    """"2, 3, 6" for chapter modules ("ch02_pooling", ...); "5a" for "ch05a_lbr_stages"."""
    return ", ".join(name[2:].split("_")[0].lstrip("0") for name in names)


def _chapters(numbers: str, has: bool = False) -> str:
    """"chapter 3" or "chapters 2, 4" for :func:`_chapter_numbers`' output; with ``has``, the verb that
    agrees with it ("chapter 3 has", "chapters 2, 4 have")."""
    several = "," in numbers
    return f"chapter{'s' if several else ''} {numbers}" + (f" {'have' if several else 'has'}" if has else "")


def reproduction_page(profile: str = "cpu") -> str:
    """The page, from the results files only: the paper's claims chapter by chapter, then the survey's
    claims of every chapter in one table, then what each chapter cost."""
    records = load_records(profile)
    lines = ["# Reproduction report", "", INTRO, ""]
    synthesis = [text for name in CHAPTERS if (make := getattr(study(name), "synthesis", None)) and name in records
                 and (text := make(records[name]))]
    claims = {name: study(name).claims(records) for name in CHAPTERS}
    surveyed = [name for name in CHAPTERS if "survey" in claims[name]]
    sources = [records[name] for name in surveyed]
    survey = [claims[name].pop("survey") for name in surveyed]
    judged_in = _chapter_numbers(surveyed)
    pending = _chapter_numbers(name for name in CHAPTERS if hasattr(study(name), "survey_claims") and name not in records)
    if survey:
        synthesis.append(f"**The survey's claims ({_chapters(judged_in)}).** "
                         f"{verdict_counts(dict(enumerate(survey)))}; for each inconclusive one the table below says how "
                         "many seeds would decide it" + (f" ({_chapters(pending)}: not run at `{profile}` yet)."
                                                         if pending else "."))
    if synthesis:
        lines += ["## In short", "", *[f"{text}\n" for text in synthesis]]
    for name in CHAPTERS:
        if not claims[name]:
            continue
        lines += [f"## {study(name).TITLE}", "", provenance_line(records[name]), ""]
        for title, item in claims[name].items():
            lines += _render(title, item)
    lines += ["## The survey's claims", ""]
    if survey:
        lines += [SURVEY_INTRO + (f" {_chapters(pending, has=True).capitalize()} not run "
                                  f"at `{profile}` yet." if pending else ""), "",
                  *[f"- {provenance_line(r)}" for r in sources], "",
                  _table(_shown(pd.concat(survey, ignore_index=True))), ""]
    else:
        lines += [f"Not run yet in profile `{profile}`.", ""]
    lines += cost_section(profile)
    return "\n".join(lines).rstrip() + "\n"


ASSEMBLED = "assembled from the parts' cells: not what the chapter cost"


def cost_table(rows: list[dict]) -> pd.DataFrame:
    """What each chapter cost in its last reproduce run, against the budget (minutes, GiB). A row
    with a ``note`` (a part that resumed from cells an earlier run computed) is not judged: its time is
    not the cost; nor is a whole-chapter run of a chapter computed in parts (it reads their cells)."""
    in_parts = {r["notebook"] for r in rows if r.get("parameters")}

    def note(r: dict) -> str | None:
        return r.get("note") or (ASSEMBLED if not r.get("parameters") and r["notebook"] in in_parts else None)

    def judged(r: dict) -> str | None:
        if note(r):
            return None
        return "yes" if r["wall_time_s"] <= BUDGET["notebook_s"] and r["peak_memory_mib"] <= BUDGET["memory_mib"] else "no"

    return pd.DataFrame([{"notebook": r["notebook"],
                          "part": ", ".join(f"{k}={v}" for k, v in (r.get("parameters") or {}).items()) or "all",
                          "threads": r.get("threads"), "wall time (min)": r["wall_time_s"] / 60,
                          "peak memory (GiB)": r["peak_memory_mib"] / 1024, "within budget": judged(r),
                          "note": note(r)} for r in rows]).astype({"threads": "Int64"})


def cost_section(profile: str) -> list[str]:
    """The cost table a reader checks before running a chapter, and what the whole study took against
    its budget: the compute behind each chapter's numbers (:func:`lbr_utils.results.computed_seconds`),
    not the rows' sum, which counts resumed parts short and assembling runs as if they computed."""
    try:
        rows = load_results("notebook_costs", profile)["metrics"]
    except FileNotFoundError:
        return []
    records = load_records(profile)
    computed = {name: computed_seconds(records[name]) for name in CHAPTERS if name in records}
    total = sum(computed.values())
    each = ", ".join(f"chapter {_chapter_numbers([name])} {seconds / 3600:.1f} h" for name, seconds in computed.items())
    return ["## What each chapter costs", "",
            f"Wall time and peak memory of each notebook's last `python -m lbr_utils.cli.reproduce --profile {profile}` "
            f"run, read from `results/{profile}/notebook_costs.json`, against the budget in `lbr_utils/profiles.py` "
            f"(a notebook <= {BUDGET['notebook_s'] // 60} min and <= {BUDGET['memory_mib'] // 1024} GiB; the study <= "
            f"{BUDGET['study_s'] // 3600} h). The numbers of the {len(computed)} chapters run so far took "
            f"{total / 3600:.1f} h to compute ({each}), {'over' if total > BUDGET['study_s'] else 'within'} the "
            f"study's {BUDGET['study_s'] // 3600} h.",
            "", _table(cost_table(rows)), ""]


def _paper_time(model: str) -> float:
    """The LBR paper's Table 6 training time of ``model``, relative to the standard run of its style."""
    return next(r["time"] for r in paper_numbers()["table6_styles"]["rows"] if r["model"] == model)


def arena_finding(metrics: dict) -> str:
    """What the allocator benchmark found, glued: the lowest bounded-arena peak against glibc's default."""
    default = metrics["glibc default"]["peak_rss_mib"]
    setting, bounded = min(((k, v["peak_rss_mib"]) for k, v in metrics.items() if k != "glibc default"),
                           key=lambda kv: kv[1])
    change = bounded - default
    return (f"Bounding the arenas {'lowered' if change < 0 else 'did not lower'} the peak: the best bounded setting "
            f"({setting}) peaked at {bounded:.0f} MiB against the default's {default:.0f} ({change:+.0f} MiB), so the "
            + ("arenas held part of it." if change < 0 else "freed memory kept in arenas does not explain the peak."))


def step_profile_table(metrics: dict) -> pd.DataFrame:
    """Where one training step's time goes (``benchmarks/profile_step.py``): share of the profiled
    self CPU time per bucket of ops, one column per stage, with the batch's padding share."""
    table = pd.DataFrame({stage: {**{k: 100 * v for k, v in r["shares"].items()},
                                  "padding tokens in the batch": 100 * r["padding_share"]}
                          for stage, r in metrics.items()})
    return table.rename_axis("share of the step (%)").reset_index()


def training_table(metrics: dict) -> pd.DataFrame:
    """Useful (non-padding) tokens/s of each arm per stage, the speed-ups and the share of the peak."""
    rows = []
    for stage, r in metrics["training"].items():
        rows.append({"stage": stage, "useful tokens/step": r["useful_tokens_per_step"],
                     **{f"{arm} (tokens/s)": r[arm]["useful_tokens_per_s"] for arm in ("ours", "before", "naive fp32")},
                     "ours / before": r["ours vs before"], "ours / naive fp32": r["ours vs naive fp32"],
                     "ours: share of bf16 peak (%)": 100 * r["ours"]["share_of_bf16_peak"]})
    return pd.DataFrame(rows)


def embedding_table(metrics: dict) -> pd.DataFrame:
    """Texts/s of our embedder and of sentence-transformers on identical tokens, fp32 and bf16."""
    return pd.DataFrame([{"precision": p, "ours (texts/s)": r["ours_texts_per_s"],
                          "sentence-transformers (texts/s)": r["st_texts_per_s"], "ours / ST": r["speedup_vs_st"],
                          "min cosine, ours vs ST": r["min_cosine"]} for p, r in metrics["embedding"].items()])


def benchmarks_page(profile: str = "cpu") -> str:
    """The "Benchmarks" page, from ``profile_step.json``, ``benchmarks.json`` and ``bench_ib_gl.json``."""
    lines = ["# Benchmarks", "",
             "How fast the book's code trains and embeds on the machine that made its numbers, and where a "
             "training step's time goes. Every number is read from a results file by "
             "`lbr_utils.report.benchmarks_page` (a test fails when this page is stale); the scripts are in "
             "`benchmarks/` and are not part of the test suite.", ""]
    sections = [
        ("Where a training step's time goes", "profile_step", "`python benchmarks/profile_step.py`: one stage-1 "
         "and one stage-2 step of SmolLM2 at the LBR chapters' batch under `torch.profiler`, each op's self CPU "
         "time in one bucket; *before* is the path the training loop took before the throughput work (padded "
         "batches, SDPA attention, unfused AdamW, fp32 frozen weights), *now* the path it takes (packed stage-1 "
         "batches, eager attention, fused AdamW, frozen weights in bf16). The speed-ups below were chosen from the "
         "first profile.", lambda m: step_profile_table(m)),
        ("Training throughput", "benchmarks", "`python benchmarks/bench_throughput.py`: three arms on the same batches, "
         "interleaved step by step, after a check that every arm computes the same first loss. *ours* is the "
         "training loop as the book ran it at the commit named below (packed batches, fused AdamW, eager attention on the CPU, frozen weights "
         "in bf16, bf16 autocast); *before* is the loop before these changes; *naive fp32* a plain PyTorch loop. "
         "Tokens are useful tokens (padding not counted); the share of the peak counts useful FLOPs against the bf16 "
         "matmul peak measured in the same run.", lambda m: training_table(m)),
        ("Embedding throughput", "benchmarks", "Our `LLMEmbedder` against sentence-transformers on the same "
         "SmolLM2 weights, both reading the plain text with mean pooling; the benchmark asserts that the two arms' "
         "vectors agree before it times them.", lambda m: embedding_table(m)),
        ("IB-GL step time against standard generative training", "bench_ib_gl", "`python benchmarks/bench_ib_gl.py`: "
         f"median seconds per step on the same batches (the paper reports {_paper_time('IB-GL (SFT)'):g} for SFT "
         f"style and {_paper_time('IB-GL (PT)'):g} for PT style, relative to the standard run of the same style).",
         lambda m: pd.DataFrame([{"arm": k, **v} for k, v in m.items() if isinstance(v, dict)])),
        ("Peak memory and the allocator", "bench_memory", "`python benchmarks/bench_memory.py`: chapter 6's "
         "compressor (the book's largest activations) trains for a few steps in a fresh process per glibc setting. "
         "If freed activations were kept in per-thread arenas, bounding the arenas would lower the peak. (The "
         "provenance line's peak memory is the benchmark's parent process; each setting's is in the table.)",
         lambda m: (pd.DataFrame([{"setting": k, "peak memory (MiB)": v["peak_rss_mib"],
                                   "seconds per step": v["seconds_per_step"]} for k, v in m.items()]), arena_finding(m))),
    ]
    for title, experiment, text, make in sections:
        lines += [f"## {title}", ""]
        try:
            record = load_results(experiment, profile)
        except FileNotFoundError:
            lines += [f"Not run yet in profile `{profile}` (no `results/{profile}/{experiment}.json`).", ""]
            continue
        made = make(record["metrics"])
        table, finding = made if isinstance(made, tuple) else (made, None)
        lines += [text, "", provenance_line(record), "", _table(table), "", *([finding, ""] if finding else [])]
    return "\n".join(lines).rstrip() + "\n"
