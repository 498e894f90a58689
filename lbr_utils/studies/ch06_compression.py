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

from collections import Counter

import numpy as np
import pandas as pd

from ..profiles import get_profile
from ..results import load_tables, save_results, timer
from ..stats import claim_family, judged_claim, late_models, quarter_gains, unconverged
from ._compression_cells import (CLAIM_RATIO, DOMAIN, N_DEV, N_DEV_RECONSTRUCT, N_TEST, RATIOS, compression_config,
                                 datasets, quality_cell)
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
    """Per passage length (medians over the repeats given: :func:`steady_repeats`' on the page): prefill and per-token time of each reading, the end
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
    return pd.DataFrame(rows, columns=BREAK_EVEN)


BREAK_EVEN = ["passage tokens", "prefill full (s)", "prefill compressed (s)", "ms/token full", "ms/token compressed",
              "end to end, full (s)", "end to end, compressed (s)", "compressed faster from (answer tokens)"]


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


BUSY_CORES = 0.5  # other work a repeat tolerates (cores kept busy as it began)
STALL = 1.5  # a reading this many times its median time at one passage length was stalled by something else
MIN_REPEATS = 3  # steady repeats a passage length needs for its speed claims to be judged


def steady_repeats(decoding: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the timing's steady rows, the repeats left out with why). A repeat (both readings at one passage
    length) is left out when other work kept more than ``BUSY_CORES`` cores busy as one of its readings
    began (unknown off Linux: left out too), or when a reading took more than ``STALL`` times its
    median there, per token or end to end: a stall the busy probe, taken before the reading, missed.
    Both readings of a repeat go together, since a claim pairs them."""
    median = decoding.groupby(["passage_tokens", "reading"])[["ms_per_token", "end_to_end_s"]].transform("median")
    busy = decoding.busy_cores.isna() | (decoding.busy_cores > BUSY_CORES)
    stalled = (decoding[["ms_per_token", "end_to_end_s"]] > STALL * median).any(axis=1)
    why = pd.Series(np.where(busy, "other work on the machine", np.where(stalled, "a stall", "")), index=decoding.index)
    flagged = decoding.assign(why=why)[why != ""]
    out = flagged.groupby(["passage_tokens", "repeat"]).why.agg(lambda w: ", ".join(sorted(set(w)))).reset_index()
    dropped = decoding.set_index(["passage_tokens", "repeat"]).index.isin(out.set_index(["passage_tokens", "repeat"]).index)
    return decoding[~dropped], out


def too_few_repeats(steady: pd.DataFrame, n: int) -> str | None:
    """Why the speed claims at ``n`` passage tokens cannot be judged, or None."""
    left = steady[steady.passage_tokens == n].repeat.nunique()
    return f"{left} steady repeat{'s' * (left != 1)} of the timing (at least {MIN_REPEATS} needed)" if left < MIN_REPEATS else None


def qa_answers(profile_name: str, quality: pd.DataFrame, seed: int) -> pd.DataFrame:
    """What each QA reading answered on one seed's test questions (at the claims' ratio; the full
    passage and the closed book beside them): the share of answers that are the asked code, another
    string of the passage (most likely another card's code: the reading found the passage but not the
    fact), and neither; and the most frequent answer with its share (a reading that gives one answer
    to every question has learnt a prior, not the passage). The test questions are rebuilt from the
    seed, as the cell built them."""
    from transformers import AutoTokenizer

    from ..compress import _normalise
    from ..models import resolve_model_path

    profile = get_profile(profile_name)
    tok = AutoTokenizer.from_pretrained(resolve_model_path(profile.model))
    examples = datasets(profile, seed, tok, compression_config(profile, seed).max_input)[2]["qa"]
    rows = []
    for mode, ratio in [("compressed", CLAIM_RATIO), ("truncated", CLAIM_RATIO), ("full", None), ("closed book", None)]:
        [hyps] = _per_example(quality[quality.seed == seed], "qa", mode, ratio).hypotheses.tolist()
        if len(hyps) != len(examples):
            raise ValueError(f"{len(hyps)} answers for {len(examples)} rebuilt questions: the results are not this "
                             "code's (rerun the chapter)")
        said = [_normalise(h) for h in hyps]
        asked = np.array([a == _normalise(e.answer) for a, e in zip(said, examples)])
        inside = np.array([bool(a) and not hit and a in _normalise(e.passage)
                           for a, hit, e in zip(said, asked, examples)])
        top, count = Counter(said).most_common(1)[0]
        rows.append({"reading": mode + (f" (r = {ratio:g})" if ratio else ""), "the asked code": asked.mean(),
                     "another string of the passage": inside.mean(), "neither": 1 - asked.mean() - inside.mean(),
                     "most frequent answer": top or "(nothing)", "its share": count / len(said)})
    return pd.DataFrame(rows).set_index("reading")


def ceiling_broken(quality: pd.DataFrame) -> dict[str, str]:
    """Task -> why its claims are not judged, where the full passage (the ceiling) scores below the best
    truncation (mean over seeds and examples): then the readings are not measured as the chapter
    says they are, and no comparison between them can be read."""
    out = {}
    for task, sub in quality.groupby("task"):
        score = sub.assign(score=sub.per_example.map(np.mean))
        full = score[score["mode"] == "full"].score.mean()
        best = score[score["mode"] == "truncated"].groupby("ratio").score.mean().max()
        if full < best:
            out[task] = f"the full passage scores below truncation ({100 * full:.1f} < {100 * best:.1f})"
    return out


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
    below = ceiling_broken(quality)
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
        scale = 1.0 if column == "ROUGE-L per example" else 100.0  # ROUGE-L is stored x100 already
        row = judged_claim(text, diffs, +1, scale=scale, source="survey, embedding understanding",
                           a=f"compressed ({task})", b=f"{other} ({task})", unit=f" points of {metric}")
        if task in below:
            return dict(row, verdict=f"not judged: {below[task]}")
        if not any(np.any(a[column].iloc[i]) for i in range(len(a))) and not any(np.any(b[column].iloc[i])
                                                                             for i in range(len(b))):
            return dict(row, verdict="not judged: neither reading scores on any example")
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
    steady, _ = steady_repeats(decoding)
    for n in sorted(decoding.passage_tokens.unique()):
        busy = too_few_repeats(steady, n)
        for text, column in [(f"decoding from the compressed context (r = {CLAIM_RATIO:g}) is faster per generated "
                              f"token, after {n} passage tokens (share of time saved)", "ms_per_token"),
                             (f"end to end (prefill + a {answer}-token answer), the compressed context is faster, "
                              f"after {n} passage tokens (share of time saved)", "end_to_end_s")]:
            row = judged_claim(text, _saving(steady, column, n) if not busy else {}, +1,
                               source="survey, embedding understanding", unit="% of the time")
            rows.append(dict(row, verdict=f"not judged: {busy}") if busy else row)
    return claim_family(rows)



def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    tables = load_tables(records[NAME])
    if "quality" not in tables or "per_example" not in tables["quality"]:  # the timing alone, or an older file
        return {}
    return {"survey": survey_claims(tables)}
