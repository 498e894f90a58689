"""The "Reproduction report" page, assembled from the chapters' claims.

Each study module judges its own claims (``lbr_utils.studies.<chapter>.claims``) from the results
files; this module only loads those files, asks every chapter for its claim tables and lays them out
with their provenance. It knows no recipe and no claim. The page is never edited by hand:
``python -m lbr_utils.cli.report`` rewrites it, and a test fails when it is stale.
"""

from __future__ import annotations

import pandas as pd

from .profiles import BUDGET
from .results import load_results, provenance_line
from .studies import CHAPTERS, study

PAGE = "book/reproduction.md"
BENCHMARKS = ("bench_ib_gl", "benchmarks")  # results files a chapter's claims may read beside its own
INTRO = ("Every number on this page is read from a results file by `lbr_utils.report.reproduction_page`; "
         "a test regenerates the page and fails if it differs. A claim is judged on per-seed paired "
         "differences: *reproduced* when every seed has the paper's sign, *partly* when only the mean "
         "does, *not reproduced* otherwise. \"ours\" and \"paper\" are differences in points (x100) "
         "unless the claim names a ratio; \"± std\" is the standard deviation of ours over the seeds (or "
         "the units a survey claim names), empty where there is one.")
SURVEY_INTRO = ("The survey states directions, not numbers, so there is no paper column: \"ours\" is the difference "
                "the claim predicts to be positive (negative for anisotropy), over \"units\" paired comparisons. "
                "Chapters 2-4, 6 and 7 ran one seed, so a verdict on one unit is a single observation, not a test.")


def _table(frame: pd.DataFrame) -> str:
    return frame.astype(object).where(frame.notna(), None).to_markdown(index=False, floatfmt=".2f", missingval="–")


def load_records(profile: str) -> dict[str, dict]:
    """Every chapter's and benchmark's results record that exists in ``results/<profile>/``."""
    records = {}
    for name in CHAPTERS + BENCHMARKS:
        try:
            records[name] = load_results(name, profile)
        except FileNotFoundError:
            continue
    return records


def _render(title: str, item: pd.DataFrame | str | tuple[str, pd.DataFrame]) -> list[str]:
    """A chapter's claim table under its title (after a paragraph, given as a pair), or a paragraph."""
    if isinstance(item, str):
        return [item, ""]
    paragraph, table = item if isinstance(item, tuple) else (None, item)
    return [f"### {title}", "", *([paragraph, ""] if paragraph else []), _table(table), ""]


def reproduction_page(profile: str = "cpu") -> str:
    """The page, from the results files only: the paper's claims chapter by chapter, then the survey's
    claims of every chapter in one table, then what each chapter cost."""
    records = load_records(profile)
    lines = ["# Reproduction report", "", INTRO, ""]
    survey, sources = [], []
    for name in CHAPTERS:
        claims = study(name).claims(records)
        if "survey" in claims:
            survey.append(claims.pop("survey"))
            sources.append(records[name])
        if not claims:
            continue
        lines += [f"## {study(name).TITLE}", "", provenance_line(records[name]), ""]
        for title, item in claims.items():
            lines += _render(title, item)
    lines += ["## The survey's claims (chapters 2-4, 6, 7)", ""]
    if survey:
        if "ch01_baselines" in records:
            sources.insert(0, records["ch01_baselines"])
        lines += [SURVEY_INTRO, "", *[f"- {provenance_line(r)}" for r in sources], "",
                  _table(pd.concat(survey, ignore_index=True)), ""]
    else:
        lines += [f"Not run yet in profile `{profile}`.", ""]
    lines += cost_section(profile)
    return "\n".join(lines).rstrip() + "\n"


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
    try:
        rows = load_results("notebook_costs", profile)["metrics"]
    except FileNotFoundError:
        return []
    total = sum(r["wall_time_s"] for r in rows)
    return ["## What each chapter costs", "",
            f"Wall time and peak memory of each notebook's last `python -m lbr_utils.cli.reproduce --profile {profile}` "
            f"run, read from `results/{profile}/notebook_costs.json`, against the budget in `lbr_utils/profiles.py` "
            f"(a notebook <= {BUDGET['notebook_s'] // 60} min and <= {BUDGET['memory_mib'] // 1024} GiB; the study <= "
            f"{BUDGET['study_s'] // 3600} h). Together: {total / 3600:.2f} h.", "", _table(cost_table(rows)), ""]
