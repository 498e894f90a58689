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
from ..stats import (claim_family, gain_table, interval, judged_claim, quarter_gains, show_gains, span,
                     still_climbing, unconverged)
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


def _test_set(profile_name: str, seed: int) -> tuple:
    """(tokenizer, test examples per task, compression config) of one seed, rebuilt from the seed as
    the quality cell built them (no model is loaded)."""
    from transformers import AutoTokenizer

    from ..models import resolve_model_path

    profile = get_profile(profile_name)
    tok = AutoTokenizer.from_pretrained(resolve_model_path(profile.model))
    cfg = compression_config(profile, seed)
    return tok, datasets(profile, seed, tok, cfg.max_input)[2], cfg


def _hypotheses(quality: pd.DataFrame, task: str, mode: str, ratio: float | None, expected: int) -> list[str]:
    [hyps] = _per_example(quality, task, mode, ratio).hypotheses.tolist()
    if len(hyps) != expected:
        raise ValueError(f"{len(hyps)} outputs for {expected} rebuilt test examples: the results are not this "
                         "code's (rerun the chapter)")
    return hyps


def qa_answers(profile_name: str, quality: pd.DataFrame, seed: int) -> pd.DataFrame:
    """What each QA reading answered on one seed's test questions (at the claims' ratio; the full
    passage and the closed book beside them): the share of answers that are the asked code, another
    string of the passage (most likely another card's code: the reading found the passage but not the
    fact), and neither; and the most frequent answer with its share (a reading that gives one answer
    to every question has learnt a prior, not the passage). The test questions are rebuilt from the
    seed, as the cell built them."""
    from ..compress import _normalise

    examples = _test_set(profile_name, seed)[1]["qa"]
    rows = []
    for mode, ratio in [("compressed", CLAIM_RATIO), ("truncated", CLAIM_RATIO), ("full", None), ("closed book", None)]:
        said = [_normalise(h) for h in _hypotheses(quality[quality.seed == seed], "qa", mode, ratio, len(examples))]
        asked = np.array([a == _normalise(e.answer) for a, e in zip(said, examples)])
        inside = np.array([bool(a) and not hit and a in _normalise(e.passage)
                           for a, hit, e in zip(said, asked, examples)])
        top, count = Counter(said).most_common(1)[0]
        rows.append({"reading": mode + (f" (r = {ratio:g})" if ratio else ""), "the asked code": asked.mean(),
                     "another string of the passage": inside.mean(), "neither": 1 - asked.mean() - inside.mean(),
                     "most frequent answer": top or "(nothing)", "its share": count / len(said)})
    return pd.DataFrame(rows).set_index("reading")


def template_floor(profile_name: str, quality: pd.DataFrame) -> pd.DataFrame:
    """Every reconstruction reading scored against its own passage and against another test passage's
    (the next one: a fixed derangement), per example and seed. The medical passages share a template
    (name, "(ICD-10-CM", code, name again), so a reading that writes a plausible card scores well above 0
    on any passage; only what it scores above another passage's is the passage's own. Returns one row
    per reading: the two means (x100, token accuracy and ROUGE-L) and the own-minus-other difference
    of token accuracy with its 95% CI over seeds and examples."""
    from ..compress import token_accuracy
    from ..generate import generation_scores
    from ..pooling import token_ids

    sub = quality[quality.task == "reconstruct"]
    diffs: dict[tuple, dict] = {}
    means: dict[tuple, list] = {}
    for seed in sorted(int(s) for s in sub.seed.unique()):
        tok, test, cfg = _test_set(profile_name, seed)
        refs = [tok.decode(token_ids(tok, e.passage)[:cfg.max_target]) for e in test["reconstruct"]]
        others = refs[1:] + refs[:1]
        for (mode, ratio), rows in sub[sub.seed == seed].groupby(["mode", sub.ratio.fillna(0)], sort=False):
            hyps = _hypotheses(rows, "reconstruct", mode, ratio or None, len(refs))
            own = [token_accuracy(tok, h, r) for h, r in zip(hyps, refs)]
            if not np.allclose(own, rows.per_example.iloc[0]):
                raise ValueError("the rebuilt references do not score the stored outputs as the run did")
            other = [token_accuracy(tok, h, r) for h, r in zip(hyps, others)]
            rouge = generation_scores(hyps, others, per_question=True)["ROUGE-L per question"]
            key = (mode, ratio)
            diffs.setdefault(key, {})[seed] = np.subtract(own, other)
            means.setdefault(key, []).append((np.mean(own), np.mean(other), np.mean(rows["ROUGE-L per example"].iloc[0]),
                                              np.mean(rouge)))
    out = []
    for (mode, ratio), per_seed in diffs.items():
        own, other, rouge_own, rouge_other = np.mean(means[(mode, ratio)], axis=0)
        row = judged_claim("own minus other", per_seed, +1)
        out.append({"reading": mode + (f" (r = {ratio:g})" if ratio else ""), "mode": mode, "ratio": ratio or None,
                    "token acc., own": 100 * own, "token acc., other": 100 * other,
                    "own - other [95% CI]": interval(row), "ROUGE-L, own": rouge_own,
                    "ROUGE-L, other": rouge_other, "above the floor": row["ci_low"] > 0,
                    "ours": row["ours"]})
    return pd.DataFrame(out).set_index("reading")


def _series(values: pd.Series) -> str:
    """"a, b and c"."""
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def summary_lines(tables: dict[str, pd.DataFrame], floor: pd.DataFrame, answer_tokens: int,
                  judged: pd.DataFrame) -> list[str]:
    """"What this shows", glued from the results: how much the compressed reading changes with the
    ratio, what it keeps above the template floor (:func:`template_floor`), what the dev losses say
    (:func:`loss_lines`), where QA sits against the closed book (read from the judged claim's CI in
    ``judged``, :func:`survey_claims`, so one lucky answer does not turn the sentence), and when
    decoding from it pays at this chapter's own answer length (``answer_tokens``, from
    :func:`qa_answer_tokens`)."""
    quality = tables["quality"].assign(score=lambda t: 100 * t.per_example.map(np.mean))
    mean = quality.groupby(["task", "mode", quality.ratio.fillna(0)]).score.mean()
    comp, trunc = mean["reconstruct", "compressed"], mean["reconstruct", "truncated"]
    ours = floor[floor["mode"] == "compressed"]
    at_floor = [r for r in RATIOS if not ours[ours.ratio == r]["above the floor"].any()]
    kept = ours[ours["above the floor"]].set_index("ratio")
    above = (kept["token acc., own"] - kept["token acc., other"]).sort_index()
    lines = [f"- **What the bottleneck carries.** Compressed reconstruction scores {span(comp)} "
             f"token accuracy at every ratio from r = {min(RATIOS):g} to {max(RATIOS):g} (k falls {max(RATIOS) / min(RATIOS):g}-fold), "
             f"truncation to the same k tokens {trunc[min(RATIOS)]:.1f} at r = {min(RATIOS):g} and {trunc[max(RATIOS)]:.1f} "
             f"at r = {max(RATIOS):g}. " + ("At no ratio does the compressed reading carry anything of its own passage "
                                             "that shows above the template floor (the table above)."
                                             if len(at_floor) == len(RATIOS) else
                                             "It shows above the template floor at r = "
                                             + ", ".join(f"{r:g}" for r in RATIOS if r not in at_floor)
                                             + ", by " + ", ".join(f"{v:.1f} at r = {r:g}" for r, v in above.items())
                                             + " points of token accuracy (descriptive intervals, not claims).")]
    at = floor[(floor["mode"] == "compressed") & (floor.ratio == CLAIM_RATIO)]
    if len(at):
        row = at.iloc[0]
        lines.append(f"- **Its own passage or a template?** At r = {CLAIM_RATIO:g} the compressed reconstruction "
                     f"scores {row['token acc., own']:.1f} token accuracy against its own passage and "
                     f"{row['token acc., other']:.1f} against another one (ROUGE-L "
                     f"{row['ROUGE-L, own']:.1f} and {row['ROUGE-L, other']:.1f}): own minus "
                     f"other {row['own - other [95% CI]']}.")
    why = loss_lines(tables["training"])
    if why:
        lines.append(f"- **Dev losses.** At the last dev point (r = {CLAIM_RATIO:g}, teacher-forced, nats per target token, "
                     "mean over seeds) " + "; ".join(why) + ".")
    qa = mean["qa"]
    closed, compressed = qa["closed book", 0], qa["compressed"]
    spread = f"{span(compressed)} at r = {min(RATIOS):g}-{max(RATIOS):g}"
    pairs = [(_per_example(q, "qa", "compressed", CLAIM_RATIO).hypotheses.iloc[0],
              _per_example(q, "qa", "closed book", None).hypotheses.iloc[0]) for _, q in tables["quality"].groupby("seed")]
    same = sum(a.strip() == b.strip() for comp_, closed_ in pairs for a, b in zip(comp_, closed_))
    identical = all(np.array_equal(_per_example(q, "qa", "compressed", CLAIM_RATIO).per_example.iloc[0],
                                   _per_example(q, "qa", "closed book", None).per_example.iloc[0])
                    for _, q in tables["quality"].groupby("seed"))
    floor_row = judged[judged.claim.str.contains("closed book")].iloc[0]
    qa_floor = not floor_row["ci_low"] > 0  # not shown above the closed book, whatever one seed's mean says
    lines.append(f"- **Questions.** Compressed exact match {spread}, the question alone (closed book) {closed:.1f}, truncation "
                 f"{qa['truncated'][min(RATIOS)]:.1f} at r = {min(RATIOS):g}, the full passage {qa['full', 0]:.1f} (means "
                 f"over seeds); at r = {CLAIM_RATIO:g} the compressed reading gives the closed book's very answer to {same} "
                 f"of {sum(len(c) for c, _ in pairs)} questions, pooled over seeds"
                 + (". It gets right exactly the questions the closed book gets right, on every seed: nothing of "
                    "the passage reaches the answers." if identical
                    else f". Its difference from the closed book, {interval(floor_row)} points, does not exclude 0: "
                    "nothing shows it answering from the passage rather than from what codes look like." if qa_floor else
                    f"; it answers more than the closed book by {interval(floor_row)} points."))
    steady, _ = steady_repeats(tables["decoding"])
    if len(steady):
        even = break_even(steady)
        lines.append(f"- **When it pays.** End to end, the compressed reading is faster from answers of "
                     f"{_series(even['compressed faster from (answer tokens)'])} tokens at "
                     f"{_series(even['passage tokens'])} passage tokens; this chapter's answers, ICD codes, are about "
                     f"{answer_tokens} tokens. The timing reads the profile's model with untrained bottleneck rows (time "
                     "depends on shapes, not weights) at passage lengths longer than the trained ones"
                     + (", and while the compressed answers are not shown above the closed book a faster answer "
                        "is no saving." if qa_floor else "."))
    return lines


def loss_lines(training: pd.DataFrame) -> list[str]:
    """Per task, the compressed and truncated readings' teacher-forced dev loss at the last dev point
    (mean over seeds), and which tells the model more: "more" or "less" only when every seed agrees,
    since one seed's last dev point moves by more than the gap."""
    last = pd.DataFrame([{**r["dev_curve"][-1], "seed": r["seed"]} for r in training.to_dict(orient="records")
                         if r.get("dev_curve")])
    out = []
    for task, name in (("qa", "the answers' loss"), ("reconstruct", "the reconstruction's")):
        comp, trunc = f"{task}, compressed, loss", f"{task}, truncated, loss"
        if not len(last) or not {comp, trunc} <= set(last):
            continue
        gap = last[comp] - last[trunc]
        said = (f"the k bottleneck states tell the model {'more' if (gap < 0).all() else 'less'} than the first k "
                "plain tokens, on every seed" if (gap < 0).all() or (gap > 0).all() else
                "the seeds disagree on which tells the model more")
        out.append(f"{name} is {last[comp].mean():.3f} compressed against {last[trunc].mean():.3f} truncated: {said}")
    return out


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


def arm_gains(training: pd.DataFrame) -> pd.DataFrame:
    """The rule of every chapter (:func:`lbr_utils.stats.gain_table`) for both trained readings of both
    tasks, one row an arm ("compressed (qa)")."""
    return pd.concat([gain_table(training.assign(arm=f"{mode} ({task})"), by=("arm",), key=f"{task}, {mode}")
                      for task in ("qa", "reconstruct") for mode in ("compressed", "truncated")], ignore_index=True)


def convergence(training: pd.DataFrame) -> pd.DataFrame:
    """What gates the claims, per arm as the page shows it: the last-quarter dev gain with its interval
    over seeds (:func:`arm_gains`), and for the QA arms the dev answer loss's last-quarter change on each
    seed, which withholds their claims while its mean falls by more than ``LOSS_FALL``
    (:func:`qa_still_learning`)."""
    table = show_gains(arm_gains(training), unit="points").set_index("arm")
    falls, still = {}, {}
    for mode in ("compressed", "truncated"):
        per_seed = [f"{found[2].mean() / 100:+.3f}" for row in training.sort_values("seed").to_dict(orient="records")
                    if (found := quarter_gains(row.get("dev_curve") or [], int(row["steps"]), f"qa, {mode}, loss"))]
        falls[f"{mode} (qa)"], still[f"{mode} (qa)"] = ", ".join(per_seed), qa_still_learning(training, mode)
    table["dev answer loss, last-quarter change per seed (nats)"] = pd.Series(falls)
    table[f"answer loss still falling (mean < -{LOSS_FALL:g})"] = pd.Series(still).map({True: "yes: not judged",
                                                                                         False: "no"})
    return table.fillna("–")


LOSS_FALL = 0.05  # nats per answer token: a QA dev loss still falling by more than this over the last quarter


def qa_still_learning(training: pd.DataFrame, mode: str) -> bool:
    """Whether a QA reading's dev answer loss still fell by more than ``LOSS_FALL`` over the last
    quarter of the steps (mean over seeds; our threshold). Exact match moves in whole examples and can
    sit at 0 while the model learns, so its flat curve alone would pass the rule of every chapter."""
    gains = [found[2].mean() for row in training.to_dict(orient="records")
             if (found := quarter_gains(row.get("dev_curve") or [], int(row["steps"]), f"qa, {mode}, loss"))]
    return bool(gains) and float(np.mean(gains)) < -100 * LOSS_FALL


def qa_answer_tokens(profile_name: str, seed: int) -> int:
    """The median length, in tokens, of one seed's test answers (ICD codes): the answer length at
    which this chapter's own use of a compressed context would be timed."""
    from ..pooling import token_ids

    tok, test, _ = _test_set(profile_name, seed)
    return int(np.median([len(token_ids(tok, e.answer)) for e in test["qa"]]))


def survey_claims(tables: dict[str, pd.DataFrame], answer_tokens: int | None = None) -> pd.DataFrame:
    """One Holm family. Quality per test example on every seed at the same token budget: compressed
    against truncated for QA at every ratio (at r = 8 truncation rarely keeps the asked code, so the
    smaller ratios say whether compression beats a truncation that could answer), for reconstruction
    at r = 8 in token accuracy and in ROUGE-L (a compressor one token off loses every later position
    of token accuracy, not of ROUGE-L), and for QA against the closed-book floor; not judged if a
    trained reading compared is far from convergence (or, for QA, its dev loss still falls). Time per
    passage length over repeats: saved per token, end to end with the timed answer length, and, with
    ``answer_tokens``, end to end at that answer length (each repeat's prefill plus that many times its
    per-token time: this chapter's own answers are far shorter than the timed ones); not judged if
    timed beside other work."""
    quality = tables["quality"]
    below = ceiling_broken(quality)
    gains = arm_gains(tables["training"])
    late = set(gains[gains["far from convergence"]].arm)
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
        row = still_climbing(unconverged(row, late), gains, column="arm")
        if row["seeds"] == 1:  # say which noise the CI holds
            row = dict(row, caveat=(row.get("caveat") or "") + "; one seed: the CI covers the test examples, not training runs")
        return row

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
    steady = steady.assign(at_answer=steady.prefill_s + (answer_tokens or 0) * steady.ms_per_token / 1000)
    for n in sorted(decoding.passage_tokens.unique()):
        busy = too_few_repeats(steady, n)
        timed = [(f"decoding from the compressed context (r = {CLAIM_RATIO:g}) is faster per generated "
                  f"token, after {n} passage tokens (share of time saved)", "ms_per_token"),
                 (f"end to end (prefill + a {answer}-token answer), the compressed context is faster, "
                  f"after {n} passage tokens (share of time saved)", "end_to_end_s")]
        if answer_tokens:
            timed.append((f"end to end with this chapter's answers (prefill + {answer_tokens} tokens, from the timed "
                          f"prefill and per-token time), the compressed context is faster, after {n} passage tokens "
                          "(share of time saved)", "at_answer"))
        for text, column in timed:
            row = judged_claim(text, _saving(steady, column, n) if not busy else {}, +1,
                               source="survey, embedding understanding", unit="% of the time")
            rows.append(dict(row, verdict=f"not judged: {busy}") if busy else row)
    return claim_family(rows)



def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    record = records[NAME]
    tables = load_tables(record)
    if "quality" not in tables or "per_example" not in tables["quality"]:  # the timing alone, or an older file
        return {}
    return {"survey": survey_claims(tables, qa_answer_tokens(record["provenance"]["profile"],
                                                              int(tables["quality"].seed.min())))}
