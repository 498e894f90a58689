"""Chapter 6's experiment: how much of a passage survives compression into k bottleneck tokens, and
when does decoding from them pay?

On the medical domain, one SmolLM2 per seed is trained on all three reading modes (compressed,
truncated to the same k tokens, full) with a curriculum: reconstruction first, then reconstruction
and QA, a dev curve as it goes. It is scored per example on passages built from the isolated
evaluation records, at every ratio of the sweep, and closed book (the question alone) as the floor.
Separately, the time to prefill a long passage and decode an answer is measured, full and
compressed, several times, with how busy other work kept the machine (a timing taken beside other
jobs is not judged). The cells live in ``_compression_cells`` (quality) and ``_timing_cells``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..profiles import get_profile
from ..results import load_tables, save_results, timer
from ..stats import claim_family, judged_claim, late_models, quarter_gains, unconverged
from ._compression_cells import (CLAIM_RATIO, DOMAIN, N_DEV, N_DEV_RECONSTRUCT, N_TEST, RATIOS, compression_config,
                                 quality_cell)
from ._timing_cells import REPEATS, timing_cell, timing_plan

NAME = __name__.rpartition(".")[2]
TITLE = "Long-context compression (chapter 6)"


def run(profile_name: str, seeds: tuple[int, ...] | None = None) -> dict[str, pd.DataFrame]:
    """Quality on every seed, and the timing (cached cells: the chapter can run in parts; ``seeds=()``
    runs the timing alone, which is best done on an otherwise idle machine)."""
    profile = get_profile(profile_name)
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    out: dict[str, list] = {}
    with timer() as t:
        for seed in seeds:
            for table, rows in quality_cell(profile, seed).items():
                out.setdefault(table, []).extend(dict(row, seed=seed) for row in rows)
        out |= timing_cell(profile)
    cfg = compression_config(profile, seeds[0] if seeds else 0)
    config = {"profile": profile.to_dict(), "domain": DOMAIN, "compression": cfg.__dict__, "test_examples": N_TEST,
              "dev_examples": {"qa": N_DEV, "reconstruct": N_DEV_RECONSTRUCT}, "passage_tokens": timing_plan(profile)[0], "answer_tokens": timing_plan(profile)[1],
              "repeats": REPEATS}
    save_results(NAME, profile_name, out, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in out.items()}


def break_even(decoding: pd.DataFrame) -> pd.DataFrame:
    """Per passage length (medians over repeats): prefill and per-token time of each reading, the end
    to end time with the timed answer length, and the answer length from which the compressed reading is faster end to end (its extra prefill paid
    back by cheaper steps; "never" when its steps are not cheaper)."""
    med = decoding.groupby(["passage_tokens", "reading"])[["prefill_s", "ms_per_token", "end_to_end_s"]].median()
    rows = []
    for n, g in med.groupby(level=0):
        g = g.droplevel(0)
        full, comp = g.loc["full"], g.drop(index="full").iloc[0]
        saved_ms = full.ms_per_token - comp.ms_per_token
        extra_ms = 1000 * (comp.prefill_s - full.prefill_s)
        rows.append({"passage tokens": n, "prefill full (s)": full.prefill_s, "prefill compressed (s)": comp.prefill_s,
                     "ms/token full": full.ms_per_token, "ms/token compressed": comp.ms_per_token,
                     "end to end, full (s)": full.end_to_end_s, "end to end, compressed (s)": comp.end_to_end_s,
                     "compressed faster from (answer tokens)": ("never" if saved_ms <= 0 else
                                                                int(max(0, np.ceil(extra_ms / saved_ms))))})
    return pd.DataFrame(rows)


def _per_example(quality: pd.DataFrame, task: str, mode: str, ratio: float | None) -> pd.DataFrame:
    rows = quality[(quality.task == task) & (quality["mode"] == mode)]
    return rows[rows.ratio.isna()] if ratio is None else rows[rows.ratio == ratio]


def _saving(decoding: pd.DataFrame, column: str, n: int) -> dict[int, np.ndarray]:
    """The share of ``column`` the compressed reading saves at ``n`` passage tokens, one repeat per key:
    the claim's "seeds" are the repeats, so beside the bootstrap a t-interval over so few of them says
    whether the verdict holds (a bootstrap over five values alone is too narrow)."""
    wide = decoding[decoding.passage_tokens == n].pivot_table(index="repeat", columns="reading", values=column)
    full = wide["full"]
    saved = (full - wide.drop(columns="full").iloc[:, 0]) / full
    return {int(repeat): np.array([value]) for repeat, value in saved.items()}


BUSY_CORES = 0.5  # other work a timing tolerates (cores kept busy, median over its repeats)


def timed_beside_other_work(decoding: pd.DataFrame) -> str | None:
    """Why a timing cannot be judged, or None: taken while other work kept more than ``BUSY_CORES``
    cores busy (the median over repeats, measured by ``costs.busy_cores``; unknown off Linux), it
    measures the neighbours as much as the readings."""
    busy = float(decoding.busy_cores.median())
    return f"timed beside other work ({busy:.1f} busy cores)" if busy > BUSY_CORES else None


LOSS_FALL = 0.05  # nats per answer token: a QA dev loss still falling by more than this over the last quarter


def qa_still_learning(training: pd.DataFrame, mode: str) -> bool:
    """Whether a QA reading's dev answer loss still fell by more than ``LOSS_FALL`` over the last
    quarter of the steps (mean over seeds; our threshold). Exact match moves in whole examples and can
    sit at 0 while the model learns, so its flat curve alone would pass the rule of every chapter."""
    gains = [found[2].mean() for row in training.to_dict(orient="records")
             if (found := quarter_gains(row.get("dev_curve") or [], int(row["steps"]), f"qa, {mode}, loss"))]
    return bool(gains) and float(np.mean(gains)) < -100 * LOSS_FALL


def survey_claims(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One Holm family. Quality per test example on every seed at the same token budget: compressed
    against truncated for QA at every ratio (at r = 8 truncation rarely keeps the asked code, so the
    smaller ratios say whether compression beats a truncation that could answer), for reconstruction
    at r = 8 in token accuracy and in ROUGE-L (a compressor one token off loses every later position
    of token accuracy, not of ROUGE-L), and for QA against the closed-book floor; not judged if a
    trained reading compared is far from convergence (or, for QA, its dev loss still falls). Time per
    passage length over repeats: saved per token, and end to end with the timed answer length (not
    judged if timed beside other work)."""
    quality = tables["quality"]
    late = set()
    for task in ("qa", "reconstruct"):  # the rule of every chapter (stats.late_groups), for both trained readings
        for mode in ("compressed", "truncated"):
            late |= late_models(tables["training"].assign(arm=f"{mode} ({task})"), by=("arm",), key=f"{task}, {mode}")
    late |= {f"{mode} (qa)" for mode in ("compressed", "truncated") if qa_still_learning(tables["training"], mode)}

    def quality_claim(text: str, task: str, other: str, ratio: float | None, column: str = "per_example",
                      metric: str | None = None) -> dict:
        at = CLAIM_RATIO if ratio is None else ratio
        a, b = _per_example(quality, task, "compressed", at), _per_example(quality, task, other, ratio)
        diffs = {s: np.subtract(a[a.seed == s][column].iloc[0], b[b.seed == s][column].iloc[0])
                 for s in sorted(set(a.seed) & set(b.seed))}
        metric = metric or ("exact match" if task == "qa" else "token accuracy")
        row = judged_claim(text, diffs, +1, source="survey, embedding understanding", a=f"compressed ({task})",
                           b=f"{other} ({task})", unit=f" points of {metric}")
        return unconverged(row, late)

    def budget(ratio: float) -> str:
        return f"at the same token budget (r = {ratio:g}), a compressed context"

    rows = [quality_claim(f"{budget(r)} answers more questions than truncation (exact match)", "qa", "truncated", r)
            for r in RATIOS]
    rows += [quality_claim(f"{budget(CLAIM_RATIO)} reconstructs the passage better than truncation ({metric})",
                           "reconstruct", "truncated", CLAIM_RATIO, column, metric)
             for column, metric in (("per_example", "token accuracy"), ("ROUGE-L per example", "ROUGE-L"))]
    rows.append(quality_claim(f"{budget(CLAIM_RATIO)} answers more questions than the question alone (closed book)",
                              "qa", "closed book", None))
    decoding = tables["decoding"]
    answer = int(decoding.answer_tokens.iloc[0])
    busy = timed_beside_other_work(decoding)
    for n in sorted(decoding.passage_tokens.unique()):
        for text, column in [(f"decoding from the compressed context (r = {CLAIM_RATIO:g}) is faster per generated "
                              f"token, after {n} passage tokens (share of time saved)", "ms_per_token"),
                             (f"end to end (prefill + a {answer}-token answer), the compressed context is faster, "
                              f"after {n} passage tokens (share of time saved)", "end_to_end_s")]:
            row = judged_claim(text, _saving(decoding, column, n), +1, source="survey, embedding understanding",
                               unit="% of the time")
            rows.append(dict(row, verdict=f"not judged: {busy}") if busy else row)
    return claim_family(rows)



def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    tables = load_tables(records[NAME])
    if "per_example" not in tables["quality"]:  # a results file from before per-example scores
        return {}
    return {"survey": survey_claims(tables)}
