"""How the study judges a claim: confidence intervals, not signs.

A claim of a paper is a direction: "A beats B". We hold per-query scores of A and B for every seed,
so the evidence is a table of *paired* differences ``A - B``, one per (seed, query). Two sources of
noise sit in it: which queries the evaluation set happens to hold, and which seed the training run
happened to draw. A CI that resamples only queries ignores the second and is too narrow; one that
averages queries first and resamples only a handful of seeds throws the first away. The paired
hierarchical bootstrap (:func:`hierarchical_bootstrap`) resamples both, in the order they arose:
seeds, then queries within each chosen seed.

The verdict of one claim reads its 95% CI (:func:`verdict_from_ci`): *reproduced* when the whole CI
lies above 0, *contradicted* when it lies below 0, *inconclusive* when it holds 0. A claim that
predicts "A is worse" is judged on the flipped differences (:func:`judge`).

A table tests several claims at once, and at 95% each, one in twenty true nulls would still come out
"decided". Holm's step-down correction (:func:`holm`) keeps the chance of *any* false decision in the
table's family at ``alpha``. The two rules are made consistent by construction:

* the bootstrap p-value is the dual of the percentile CI: the ``1 - a`` CI excludes 0 exactly when
  ``p < a`` (for any ``a > 1 / n_boot``; see :class:`BootstrapResult`);
* a claim's family verdict (:func:`holm_verdicts`) is its CI verdict, kept only when its
  Holm-adjusted p is below ``alpha``, else "inconclusive". Holm only ever raises p, so the
  correction can turn a decision into "inconclusive" and never the reverse; with ``alpha = 0.05`` and
  95% CIs a family of one claim keeps its CI verdict exactly.

The CI we print beside a verdict is the unadjusted 95% one: it says how large the difference is,
while the Holm-adjusted p says whether the family lets us call it.

The module also holds the per-seed summaries the chapters' tables print (:func:`mean_std`,
:func:`fmt`): a mean ± standard deviation describes, the CI verdict judges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

NO_DIFFERENCES = "no per-seed differences to judge"
VERDICTS = ("reproduced", "contradicted", "inconclusive")

# Most random query indices drawn in one block (~32 MiB of int64): keeps memory flat for large sets.
_BLOCK = 1 << 22


# ---------------------------------------------------------------------------------------------------
# Per-seed summaries for the chapters' tables.
# ---------------------------------------------------------------------------------------------------


def mean_std(table: pd.DataFrame, keys: Sequence[str], value: str = "score", scale: float = 100.0) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; NaN for one seed) and seed count of ``value`` per ``keys``.

    ``scale`` turns scores in [0, 1] into the points (x100) that papers print.
    """
    grouped = table.groupby(list(keys), sort=False)[value]
    out = grouped.agg(["mean", "std", "count"]).rename(columns={"count": "seeds"})
    out[["mean", "std"]] *= scale
    return out


def fmt(mean: float, std: float, digits: int = 1) -> str:
    """``"34.2 ± 1.3"``; a single seed has no spread and prints as the mean alone."""
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def span(values: Iterable[float], form: str = "{:.1f}") -> str:
    """``"4.4-5.2"``: the range of ``values`` as printed, or one number where both ends print alike."""
    values = list(values)
    low, high = form.format(min(values)), form.format(max(values))
    return low if low == high else f"{low}-{high}"


def steps_read(table: pd.DataFrame, totals: pd.DataFrame | None = None, by: str = "model") -> pd.Series:
    """The step each seed's run of a ``by`` group was read at, e.g. ``"500/800, 400/800"``: over its
    run's length where ``totals`` (training rows: ``by``, seed, steps) has it, in seed order.

    A run is scored at its best dev point, so two seeds of one recipe may be read at different steps,
    and a run read at its last step may not have peaked; the table shows which, so a reader can see how far
    each result trained. A model that is not trained (no step, or step 0) prints ``"–"``.
    """
    if "steps" not in table:
        return pd.Series("–", index=pd.unique(table[by]), dtype=str)
    length = {} if totals is None else {(r[by], r["seed"]): r["steps"] for r in totals.to_dict(orient="records")}

    def read(rows: pd.DataFrame) -> str:
        rows = rows[rows.steps > 0].sort_values("seed")
        return ", ".join(f"{int(r['steps'])}/{int(length[key])}" if (key := (r[by], r["seed"])) in length
                         else str(int(r["steps"])) for r in rows.to_dict(orient="records")) or "–"

    return table.groupby(by, sort=False)[[by, "seed", "steps"]].apply(read)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation of ``x`` and ``y``.

    Ranks, not values: "does a higher x go with a higher y" is the question, and nothing says the
    relation is linear (Pearson's r would be).
    """
    from scipy.stats import spearmanr

    return float(spearmanr(x, y)[0])


# ---------------------------------------------------------------------------------------------------
# The paired hierarchical bootstrap and the verdicts built on it.
# ---------------------------------------------------------------------------------------------------


def claim_row(text: str, ours: float, std: float, paper: float, judged: str) -> dict:
    """One row of a claim table: our value, its spread, the paper's, the verdict."""
    return {"claim": text, "ours": ours, "± std": std, "paper": paper, "verdict": judged}


@dataclass(frozen=True)
class BootstrapResult:
    """A claim's difference with its percentile CI and a two-sided bootstrap p-value.

    Attributes:
        mean: the mean over seeds of each seed's mean per-query difference. Every seed weighs the
            same, whatever its number of queries: a seed is one training run, the unit we resample.
        low, high: the percentile CI. ``low`` is the ``ceil(a/2 * n_boot)``-th smallest bootstrap
            mean (``a = 1 - confidence``), ``high`` the same rank counted from the top.
        p_value: ``2 * min(#{means <= 0}, #{means >= 0}) / n_boot``, clipped to ``[1 / n_boot, 1]``.
            This makes it the dual of the CI: the ``1 - a`` CI excludes 0 exactly when ``p < a``
            (for ``a > 1 / n_boot``). A p-value of ``1 / n_boot`` means that no resample crossed 0;
            the bootstrap cannot resolve anything smaller.
        n_seeds: number of seeds (training runs).
        n_queries: number of paired differences over all seeds.
    """

    mean: float
    low: float
    high: float
    p_value: float
    n_seeds: int
    n_queries: int


def _as_seeds(diffs: Mapping[object, Iterable[float]] | Iterable[Iterable[float]]) -> list[np.ndarray]:
    """One 1-D float array per seed, checked: no seed may be empty or hold a NaN."""
    groups = diffs.values() if isinstance(diffs, Mapping) else diffs
    seeds = []
    for group in groups:
        values = np.asarray(group, dtype=float)
        if values.ndim != 1:
            raise ValueError("each seed needs a 1-D array of per-query differences (for one seed pass [values])")
        if values.size == 0:
            raise ValueError("a seed has no per-query differences")
        if not np.isfinite(values).all():
            raise ValueError("per-query differences must be finite (a NaN score?)")
        seeds.append(values)
    if not seeds:
        raise ValueError(NO_DIFFERENCES)
    return seeds


def _query_bootstrap_means(values: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` means of ``values`` resampled with replacement (each of ``len(values)`` draws)."""
    n = values.size
    out = np.empty(count)
    rows = max(1, _BLOCK // n)
    for start in range(0, count, rows):
        stop = min(count, start + rows)
        out[start:stop] = values[rng.integers(n, size=(stop - start, n))].mean(axis=1)
    return out


def hierarchical_bootstrap(diffs: Mapping[object, Iterable[float]] | Iterable[Iterable[float]],
                           n_boot: int = 10_000, confidence: float = 0.95, rng_seed: int = 0) -> BootstrapResult:
    """Paired hierarchical bootstrap of a mean difference: resample seeds, then queries within them.

    One resample draws as many seeds as there are, with replacement; for each drawn seed it draws
    that seed's number of queries, with replacement, from that seed's differences, and averages them.
    The statistic is the mean of those per-seed means. Resampling seeds carries the run-to-run
    variation into the CI; resampling queries carries the evaluation set's. With a single seed the
    first stage always draws that seed, so this is the plain query bootstrap.

    Caveat: three seeds (the study's number) say little about how much seeds vary, and a bootstrap
    has no t-correction for that. When seed-to-seed variation swamps the query noise the CI is too
    narrow (~70% coverage with 3 seeds, not 95%); when query noise dominates, resampling both
    stages counts it twice and the CI is a little wide (~98%). In between, as in the test's
    simulation (per-query sd 0.3 over 300 queries, seed sd 0.01), it covers ~95%.

    Args:
        diffs: per-query paired differences ``A - B``, one array per seed: a mapping seed -> array
            (keys are only labels) or a list of arrays. Seeds may hold different numbers of queries.
        n_boot: number of bootstrap resamples; p-values below ``1 / n_boot`` cannot be resolved.
        confidence: coverage of the percentile CI.
        rng_seed: seed of the resampling, so a report is reproducible to the digit.

    The work is vectorised: 10,000 resamples of 3 seeds x 300 queries take a fraction of a second.
    """
    seeds = _as_seeds(diffs)
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    rng = np.random.default_rng(rng_seed)
    n_seeds = len(seeds)
    chosen = rng.integers(n_seeds, size=(n_boot, n_seeds))
    seed_means = np.empty((n_boot, n_seeds))
    for s, values in enumerate(seeds):
        drawn = chosen == s
        seed_means[drawn] = _query_bootstrap_means(values, int(drawn.sum()), rng)
    means = seed_means.mean(axis=1)

    tail = (1 - confidence) / 2
    # "inverted_cdf" picks an order statistic (no interpolation) and the upper end is the lower end
    # of the negated means, so the CI is symmetric under A - B -> B - A and exactly dual to p below.
    low = float(np.quantile(means, tail, method="inverted_cdf"))
    high = -float(np.quantile(-means, tail, method="inverted_cdf"))
    crossed = min(int((means <= 0).sum()), int((means >= 0).sum()))
    p_value = float(np.clip(2 * crossed / n_boot, 1 / n_boot, 1.0))
    return BootstrapResult(mean=float(np.mean([v.mean() for v in seeds])), low=low, high=high, p_value=p_value,
                           n_seeds=n_seeds, n_queries=sum(v.size for v in seeds))


def verdict_from_ci(low: float, high: float) -> str:
    """*reproduced* if the CI lies above 0, *contradicted* if below 0, *inconclusive* if it holds 0.

    A CI that touches 0 is inconclusive: no difference is a value the data still allow.
    """
    if low > high:
        raise ValueError(f"CI is reversed: low {low} > high {high}")
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted"
    return "inconclusive"


def judge(diffs: Mapping[object, Iterable[float]] | Iterable[Iterable[float]], expected_sign: int = +1,
          paper: float | None = None, n_boot: int = 10_000, confidence: float = 0.95,
          rng_seed: int = 0) -> dict[str, object]:
    """One claim, judged: our difference with its CI, the p-value, the verdict, and the paper's place.

    ``diffs`` are per-query differences ``A - B`` per seed (as for :func:`hierarchical_bootstrap`).
    ``expected_sign`` is the sign the claim predicts for ``A - B``: +1 for "A beats B", -1 for "A is
    worse than B". The verdict is taken on ``expected_sign * (A - B)``, so *reproduced* always means
    "the data side with the claim". The numbers are reported as ``A - B`` (not flipped), the same
    direction as the paper's own difference beside them; for ``expected_sign = -1`` a reproduced claim
    therefore shows a CI below 0. (The bootstrap is symmetric under the flip, so this is the same as
    bootstrapping the flipped differences and flipping the CI back.)

    Returns:
        ``mean``, ``ci_low``, ``ci_high`` (as ``A - B``, in the units of ``diffs``: scale for print),
        ``p`` (two-sided, unadjusted), ``verdict``, and ``paper_in_ci``: whether ``paper`` (the
        paper's ``A - B``) lies in ``[ci_low, ci_high]``, or None when the paper gives no number.
    """
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign}")
    result = hierarchical_bootstrap(diffs, n_boot=n_boot, confidence=confidence, rng_seed=rng_seed)
    if expected_sign == 1:
        judged = verdict_from_ci(result.low, result.high)
    else:
        judged = verdict_from_ci(-result.high, -result.low)
    paper_in_ci = None if paper is None or pd.isna(paper) else bool(result.low <= paper <= result.high)
    return {"mean": result.mean, "ci_low": result.low, "ci_high": result.high, "p": result.p_value,
            "verdict": judged, "paper_in_ci": paper_in_ci}


def seed_interval(diffs: Mapping[object, Iterable[float]] | Iterable[Iterable[float]],
                  confidence: float = 0.95) -> tuple[float, float] | None:
    """A t-interval over the per-seed mean differences: the check on a bootstrap verdict that the
    bootstrap cannot give itself. With three seeds the bootstrap's CI is too narrow when seeds vary
    more than queries (:func:`hierarchical_bootstrap`'s caveat); this interval treats each seed as one
    observation and pays Student's t with ``n - 1`` degrees of freedom for knowing their spread from
    so few. A verdict whose seed interval holds 0 could flip on a rerun. None for fewer than two seeds;
    with two, t(1) = 12.7 makes nearly every interval hold 0: the check is meant for three or more."""
    from scipy import stats as st

    means = np.array([v.mean() for v in _as_seeds(diffs)])
    if len(means) < 2:
        return None
    half = st.t.ppf(0.5 + confidence / 2, len(means) - 1) * means.std(ddof=1) / np.sqrt(len(means))
    return float(means.mean() - half), float(means.mean() + half)


def holds_across_seeds(row: Mapping[str, object]) -> bool | None:
    """Whether a decided claim's seed-level interval (:func:`seed_interval`) agrees with its verdict:
    it lies on the verdict's side of 0 (of ``-margin`` for a non-inferiority claim). None for an
    undecided claim or one without a seed interval."""
    low, high = row.get("seed_low"), row.get("seed_high")
    if row.get("verdict") not in ("reproduced", "contradicted") or low is None or pd.isna(low):
        return None
    margin = row.get("margin")
    margin = 0.0 if margin is None or pd.isna(margin) else float(margin)
    worse = row.get("expected_sign") == -1  # "A is worse than B": the claim's side is below 0
    above = high < 0 if worse else low + margin > 0
    below = low > 0 if worse else high + margin < 0
    return bool(above if row["verdict"] == "reproduced" else below)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Sort the m p-values ascending; the i-th smallest (i from 0) is multiplied by ``m - i`` and the
    results are made non-decreasing along the sorted order (a claim is never easier to reject than a
    stronger one) and capped at 1. Rejecting every claim whose adjusted p is below ``alpha`` keeps
    the chance of any false rejection in the family at most ``alpha``, under any dependence between
    the claims (they share seeds and queries here), and rejects at least what Bonferroni does.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError("p_values must be a flat sequence")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted.tolist()


def holm_verdicts(results: Sequence[Mapping[str, object]], alpha: float = 0.05) -> list[dict[str, object]]:
    """A table's claims judged as one family: each claim keeps its CI verdict only if its
    Holm-adjusted p is below ``alpha``, else it becomes *inconclusive*.

    ``results`` are :func:`judge` outputs (any mappings with ``p`` and ``verdict``). Returns copies
    with ``p_holm`` added and ``verdict`` replaced by the family's verdict; order is kept. Because
    the p-value is the dual of the CI, with ``alpha = 1 - confidence`` this is "the Holm test rejects
    no difference, in the direction the CI shows".
    """
    adjusted = holm([float(r["p"]) for r in results])
    return [{**r, "p_holm": q, "verdict": r["verdict"] if q < alpha else "inconclusive"}
            for r, q in zip(results, adjusted)]


# ---------------------------------------------------------------------------------------------------
# Claim tables: per-query differences in, judged and Holm-corrected rows out.
# ---------------------------------------------------------------------------------------------------


def per_query_differences(table: pd.DataFrame, a: str, b: str, column: str = "model", by: str = "seed",
                          value: str = "per_query") -> dict[object, np.ndarray]:
    """``A - B`` query by query, one array per ``by`` unit (a seed) that holds both arms once.

    ``table`` has one row per (arm, unit) whose ``value`` is the list of per-query scores, in the same
    query order for every arm of a unit (the evaluation set's order). A unit with either arm missing
    is left out; two arms scored on different query lists raise.
    """
    out = {}
    for unit, group in table.groupby(by, sort=True):
        rows_a, rows_b = group[group[column] == a], group[group[column] == b]
        if len(rows_a) > 1 or len(rows_b) > 1:
            raise ValueError(f"{by}={unit}: more than one row for {a!r} or {b!r}: select one budget first")
        if len(rows_a) == 1 and len(rows_b) == 1:
            x, y = np.asarray(rows_a[value].iloc[0], dtype=float), np.asarray(rows_b[value].iloc[0], dtype=float)
            if x.shape != y.shape:
                raise ValueError(f"{by}={unit}: {a!r} and {b!r} were scored on different query lists")
            out[unit] = x - y
    return out


def judged_claim(text: str, diffs: Mapping[object, Iterable[float]], expected_sign: int = +1,
                 paper: float | None = None, scale: float = 100.0, margin: float = 0.0, **labels) -> dict:
    """One row of a claim table: the mean paired difference ``A - B`` with its 95% hierarchical
    bootstrap CI (x ``scale``, like the paper's points), the paper's difference and whether our CI
    holds it, the unadjusted p and the CI verdict (:func:`judge`). ``labels`` (e.g. ``domain``) lead.

    ``margin`` (in the units of ``diffs``) turns "A beats B" into "A is at most ``margin`` worse than
    B" (non-inferiority): the verdict reads the CI of ``A - B + margin``; the numbers stay ``A - B``.
    """
    if margin and expected_sign != 1:
        raise ValueError("a margin (non-inferiority) needs expected_sign=+1: state the claim as 'A is at most "
                         "margin worse than B'")
    diffs = {k: np.asarray(v, dtype=float) for k, v in diffs.items()}
    if not diffs:
        return {**labels, "claim": text, "ours": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "paper": paper, "paper_in_ci": None, "p": 1.0, "verdict": NO_DIFFERENCES, "seeds": 0,
                "expected_sign": expected_sign, "seed_low": None, "seed_high": None, "seeds_agreeing": 0}
    j = judge({k: v + margin for k, v in diffs.items()}, expected_sign, None)
    low, high = (j["ci_low"] - margin) * scale, (j["ci_high"] - margin) * scale
    no_paper = paper is None or pd.isna(paper)
    by_seed = seed_interval(diffs)
    return {**labels, "claim": text, "ours": (j["mean"] - margin) * scale, "ci_low": low, "ci_high": high,
            "paper": paper, "paper_in_ci": None if no_paper else bool(low <= paper <= high),
            "p": j["p"], "verdict": j["verdict"], "seeds": len(diffs), "margin": margin * scale,
            "expected_sign": expected_sign,
            "seed_low": None if by_seed is None else by_seed[0] * scale,
            "seed_high": None if by_seed is None else by_seed[1] * scale,
            # how many seeds' mean differences fall on the same side as the pooled one (a fragile verdict's context)
            "seeds_agreeing": int(sum(np.sign(v.mean() + margin) == np.sign(j["mean"]) for v in diffs.values()))}


def seeds_to_decide(row: Mapping[str, object]) -> int | None:
    """Roughly how many seeds would make an inconclusive claim's CI exclude 0, were its mean difference
    the true one: the CI's half-width shrinks like one over the root of the seeds (when seeds, not
    queries, dominate the noise; more queries help when they do). None for a decided claim or a
    zero difference. A non-inferiority claim (a ``margin``) is decided against -margin, not 0."""
    margin = row.get("margin")
    margin = 0.0 if margin is None or pd.isna(margin) else float(margin)
    ours, low, high = (float(row[k]) + margin for k in ("ours", "ci_low", "ci_high"))
    n = int(row["seeds"])
    if row["verdict"] != "inconclusive" or ours == 0 or not np.isfinite(ours):
        return None
    return int(np.ceil(n * ((high - low) / 2 / abs(ours)) ** 2))


FLAT_GAIN = 1.0  # the study's convergence rule: a run has flattened once its last quarter gains less (dev points)
PER_QUERY = "dev per query"  # a dev point's per-query NDCG@10 scores, where the trainer stores them
NOT_CONVERGED = "not converged"  # how a verdict withheld by the convergence gate ends
FEASIBLE_SEEDS = 30  # more seeds than this, and a claim's difference is too small to decide at this scale


def loss_change(loss_curve: Sequence[Mapping]) -> float:
    """How a run's training loss moved from the third quarter of its steps to the fourth (mean of each
    quarter's logged points: a logged loss is one batch's). The evidence a run without a dev curve
    (a stage-1 model) gives of whether it was still learning."""
    curve = pd.DataFrame(list(loss_curve), columns=["step", "loss"])
    end = curve.step.max() if len(curve) else 0
    third, fourth = (curve[(curve.step > lo * end) & (curve.step <= hi * end)].loss.mean()
                     for lo, hi in ((0.5, 0.75), (0.75, 1.0)))
    return float(fourth - third)


def quarter_gains(curve: Sequence[Mapping], end: int, key: str = "dev NDCG@10") -> tuple[float, float, np.ndarray] | None:
    """What a run gained on dev over the last quarter of its first ``end`` steps: (the step where that
    quarter starts, the score at ``end``, the gains), scores x100. The gains are per dev query (the
    score at ``end`` minus the score at the quarter's start, interpolated between the dev points
    around it) where the curve stores per-item scores (per query for NDCG, per text under
    "<key> per text" for another score), else the one gain of the mean score.

    Only the quarter itself counts: a line through the whole second half would credit a curve that
    rose and then stopped with its earlier rise (one LBR run scored 81.1, 85.7, 85.6 at steps 200,
    300, 400: the half's line says +2.2, its last quarter -0.1), and training curves are that shape.
    The price is noise, which the per-query gains let :func:`late_groups` measure. None when the
    curve has no point at ``end`` or none at or before the quarter's start."""
    by_step = {int(p["step"]): p for p in curve if int(p["step"]) <= end}  # a repeated step: the last point wins
    points = sorted(by_step.items())
    start = 0.75 * end
    before = [p for p in points if p[0] <= start]
    if not points or points[-1][0] != end or not before:
        return None
    (s0, p0), (s1, p1) = before[-1], next(p for p in points if p[0] > before[-1][0])
    three = (p0, p1, points[-1][1])
    # per-item scores (the NDCG curve's per query, another score's "<key> per text") only count when all
    # three points have them alike
    items = PER_QUERY if key == "dev NDCG@10" else f"{key} per text"
    lists = [p.get(items) for p in three]
    if not (all(lists) and len({len(v) for v in lists}) == 1):
        lists = [[p[key]] for p in three]
    v0, v1, v_end = (np.asarray(v, dtype=float) for v in lists)
    w = (start - s0) / (s1 - s0)
    gains = 100 * (v_end - ((1 - w) * v0 + w * v1))
    if not np.isfinite(gains).all():  # a failed dev evaluation is no evidence
        return None
    return start, 100 * float(points[-1][1][key]), gains


def quarter_gain_table(runs: pd.DataFrame, by: Sequence[str], column: str = "gains") -> pd.DataFrame:
    """Per group (keys of ``by``) of runs, one per seed (``seed`` column), each with its last-quarter
    gains (:func:`quarter_gains`; None for a run whose curve cannot show its last quarter): the mean
    gain with its 95% CI (:func:`hierarchical_bootstrap`: seeds, then dev queries), whether it has
    flattened (mean below ``FLAT_GAIN``) and whether it is *far from convergence*: the CI lies at or
    above ``FLAT_GAIN`` (the run was surely still climbing by a point or more), or there is no curve
    to tell (no evidence is no convergence). A group of one run whose curve keeps only a mean score
    has one gain and no CI (infinite bounds): it may not have flattened, but nothing shows it was
    surely climbing, so its claims are judged and marked (:func:`still_climbing`)."""
    rows = []
    for key, group in (runs.groupby(list(by), dropna=False) if not runs.empty else []):
        gains = [r[column] for r in group.to_dict(orient="records")]  # one run a seed (a repeat counts, not overwrites)
        found = None if any(g is None for g in gains) else hierarchical_bootstrap(gains)
        mean, low, high = (found.mean, found.low, found.high) if found else (float("inf"),) * 3
        if found and sum(np.size(g) for g in gains) == 1:  # one run, one score: no CI, so nothing shows the run
            low, high = -float("inf"), float("inf")        # surely climbing; its claims are judged, with care
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "gain": mean, "gain CI low": low,
                     "gain CI high": high, "flattened": mean < FLAT_GAIN, "far from convergence": low >= FLAT_GAIN})
    return pd.DataFrame(rows, columns=[*by, "gain", "gain CI low", "gain CI high", "flattened", "far from convergence"])


def late_groups(runs: pd.DataFrame, by: Sequence[str], column: str = "gains") -> set:
    """The groups far from convergence (:func:`quarter_gain_table`): claims about them are not judged.
    The one convergence rule every chapter applies. Why the CI and not the mean alone: one run's
    two-point gain on 100 dev queries has a standard error of 1-2 points, the size of the threshold,
    so the mean alone would let noise decide which claims are judged."""
    return _far(quarter_gain_table(runs, by, column), by)


def _far(table: pd.DataFrame, by: Sequence[str]) -> set:
    far = table[table["far from convergence"]]
    return {row[by[0]] if len(by) == 1 else tuple(row[k] for k in by) for row in far.to_dict(orient="records")}


def gain_table(training: pd.DataFrame, by: Sequence[str] = ("model",), key: str = "dev NDCG@10") -> pd.DataFrame:
    """:func:`quarter_gain_table` of a chapter's training rows (a ``dev_curve``, ``steps`` and ``seed``
    per run, the curve's score under ``key``): what the page shows under its learning curves."""
    runs = [{**{k: row[k] for k in by}, "seed": row["seed"],
             "gains": None if (found := quarter_gains(row.get("dev_curve") or [], int(row["steps"]), key)) is None
             else found[2]} for row in training.to_dict(orient="records")]
    return quarter_gain_table(pd.DataFrame(runs), by)


def late_models(training: pd.DataFrame, by: Sequence[str] = ("model",), key: str = "dev NDCG@10") -> set:
    """:func:`late_groups` of a chapter's training rows (:func:`gain_table`)."""
    return _far(gain_table(training, by, key), by)


def show_gains(table: pd.DataFrame, unit: str = "points") -> pd.DataFrame:
    """A :func:`gain_table` for the page: the last-quarter gain with its 95% CI, and the two readings
    of the rule (flattened: the mean gain under ``FLAT_GAIN``; far from convergence: the CI above it,
    which withholds a claim's verdict)."""
    keys = [c for c in table.columns if c not in {"gain", "gain CI low", "gain CI high", "flattened",
                                                  "far from convergence"}]
    shown = lambda r: "no curve" if not np.isfinite(r["gain"]) else _gain(r)
    return pd.DataFrame({**{k: table[k] for k in keys},
                         f"last-quarter gain, {unit} [95% CI]": table.apply(shown, axis=1),
                         f"flattened (< {FLAT_GAIN:g})": table["flattened"].map({True: "yes", False: "no"}),
                         "far from convergence": table["far from convergence"].map({True: "yes: not judged", False: "no"})})


def still_climbing(row: dict, gains: pd.DataFrame, column: str = "model") -> dict:
    """``row`` with a ``caveat`` naming each arm it compares that has not flattened (mean last-quarter
    gain of ``FLAT_GAIN`` or more) though it is not far from convergence (:func:`gain_table`): its
    verdict stands, but more training could move it, and the page says so beside the verdict."""
    arms = row.get("arms") or (row.get("a"), row.get("b"))
    up = gains[~gains.flattened & ~gains["far from convergence"] & gains[column].isin(arms)]
    if up.empty:
        return row
    return dict(row, caveat="; read with care: " + ", ".join(
        f"{r[column]} had not flattened (its last quarter gained {_gain(r)})" for r in up.to_dict(orient="records")))


def _gain(row: Mapping[str, object]) -> str:
    """A last-quarter gain as the pages print it: "+1.5 [-0.7, +4.0]", or "+2.8 (one run, no CI)"."""
    if not (np.isfinite(row["gain CI low"]) and np.isfinite(row["gain CI high"])):
        return f"{signed(row['gain'])} (one run, no CI)"
    return f"{signed(row['gain'])} [{signed(row['gain CI low'])}, {signed(row['gain CI high'])}]"


RUN_IDENTITY = ["domain", "seed", "stage", "seconds", "steps", "final_loss"]  # what tells two training runs apart


def each_run_once(training: pd.DataFrame) -> pd.DataFrame:
    """A chapter's training rows with each training run once, under the first model's name. A stage-1
    checkpoint that several models start from is trained once but stored in each of their cells (the
    same time, steps and loss): counted per model it would inflate compute, and draw one curve as many."""
    return training.drop_duplicates(RUN_IDENTITY)


def verdict_counts(families: Mapping[str, pd.DataFrame]) -> str:
    """"N claims: r reproduced, c contradicted, i inconclusive" over claim families (tables with a
    ``verdict`` column)."""
    verdicts = pd.concat(families.values()).verdict.value_counts()
    parts = [f"{verdicts.get(v, 0)} {v}" for v in ("reproduced", "contradicted", "inconclusive")]
    left = [v for v in verdicts.index if v.startswith("not judged")]
    if late := int(verdicts[[v for v in left if v.endswith(NOT_CONVERGED)]].sum()):
        parts.append(f"{late} not judged (an arm far from convergence)")
    if other := int(verdicts[[v for v in left if not v.endswith(NOT_CONVERGED)]].sum()):
        parts.append(f"{other} not judged (for the reason each gives)")
    checks = [holds_across_seeds(r) for table in families.values() for r in table.to_dict(orient="records")]
    split, checked = checks.count(False), sum(c is not None for c in checks)
    one = split == 1
    tail = (f" ({split} of the {checked} decided verdicts with several seeds {'does' if one else 'do'} not hold over "
            f"seeds alone: a rerun could flip {'it' if one else 'them'})" if split else "")
    return f"{int(verdicts.sum())} claims: " + ", ".join(parts) + tail


def signed(x: float, digits: int = 1) -> str:
    """``x`` with its sign, never "-0.0" or a "+0.0" that hides which side of 0 it is on: a non-zero
    value that rounds to zero gets the digits (up to three more) that show its sign, so a CI printed
    [-0.03, +2.4] is visibly inconclusive."""
    x = float(x)
    while x and round(x, digits) == 0 and digits < 4:
        digits += 1
    return f"{round(x, digits) + 0.0:+.{digits}f}"


def interval(row: Mapping[str, object], digits: int = 1) -> str:
    """A claim row's difference and 95% CI as the pages print it: "+1.5 [-0.7, +4.0]"."""
    return f"{signed(row['ours'], digits)} [{signed(row['ci_low'], digits)}, {signed(row['ci_high'], digits)}]"


def verdict_lines(table: pd.DataFrame, unit: str = " NDCG@10 points") -> list[str]:
    """A judged claim family as "What this shows" bullets: verdict, claim, difference and CI, and for an
    inconclusive claim roughly how many seeds would decide it (:func:`seeds_to_decide`). A row's own
    ``unit`` (a family that mixes points and shares of time) wins over ``unit``."""
    lines = []
    for r in table.to_dict(orient="records"):
        where = "".join(f" ({r[k]})" for k in ("domain", "embedder") if isinstance(r.get(k), str))
        own = r["unit"] if isinstance(r.get("unit"), str) else unit
        numbers = "" if pd.isna(r["ours"]) else f": {signed(r['ours'])}{own} [{signed(r['ci_low'])}, {signed(r['ci_high'])}]"
        caveat = r["caveat"] if isinstance(r.get("caveat"), str) else ""
        lines.append(f"- **{r['verdict']}**: {r['claim']}{where}{numbers}{to_decide(r)}{fragile(r)}{caveat}.")
    return lines


def claim_lines(table: pd.DataFrame, by: str = "domain") -> list[str]:
    """A claim family as one bullet per claim, its rows side by side by ``by`` (e.g. each domain's
    verdict and difference with its 95% CI): the shape of an "In brief", where a verdict line per row
    would repeat every claim once per domain. A row the seed interval does not carry is marked."""
    lines = []
    for claim, rows in table.groupby("claim", sort=False):
        parts = [f"{r[by]}: {r['verdict']}" + ("" if pd.isna(r["ours"]) else f", {interval(r)}")
                 + (" (could flip)" if holds_across_seeds(r) is False else "")
                 for r in rows.to_dict(orient="records")]
        lines.append(f"- **{claim}**: {'; '.join(parts)}.")
    return lines


HOLDS = {True: "yes", False: "no: could flip"}  # the page's "holds over seeds" column


def fragile(row: Mapping[str, object]) -> str:
    """A decided claim whose seed-level interval disagrees (:func:`holds_across_seeds`), as a clause;
    empty otherwise."""
    if holds_across_seeds(row) is not False:
        return ""
    margin = row.get("margin")
    against = f"-{float(margin):g}" if margin is not None and not pd.isna(margin) and margin else "0"
    n, agreeing = int(row["seeds"]), row.get("seeds_agreeing")
    seeds = (f"the t-interval of the {n} seed means, [{signed(row['seed_low'])}, {signed(row['seed_high'])}], does not "
             f"clear {against}")
    if agreeing == n:  # every seed agrees: the interval is wide because n - 1 degrees of freedom are few
        freedom = f"{n - 1} degree{'' if n == 2 else 's'} of freedom"
        return f"; all {n} seed means lie on its side, but {seeds} ({freedom}): a rerun could flip it even so"
    return f"; over seeds alone, {seeds}: a rerun could flip it"


def verdict_sentence(row: Mapping[str, object], holds: str, fails: str, open_: str) -> str:
    """One claim as a sentence of a chapter's answer: ``holds`` if reproduced, ``fails`` if
    contradicted, ``open_`` otherwise, followed by the difference it rests on, its verdict and whether
    a rerun could flip it (:func:`fragile`)."""
    text = {"reproduced": holds, "contradicted": fails}.get(str(row["verdict"]), open_)
    numbers = "no difference to judge" if pd.isna(row["ours"]) else f"{row['a']} minus {row['b']}: {interval(row)}"
    return f"{text} ({numbers}, {row['verdict']}{fragile(row)})."


def seeds_wanted(rows: Sequence[Mapping[str, object]]) -> str:
    """What would settle the rest of ``rows`` (a chapter's judged claims), as the sentences its "What
    would decide it" opens with: more seeds for the open claims (each verdict line gives its count,
    :func:`to_decide`) and for the decided ones a rerun could flip (:func:`fragile`); nothing feasible
    for the open claims that would take more than :data:`FEASIBLE_SEEDS` seeds; a larger family
    effect or fewer claims for those only Holm holds back (:func:`held_back_by_holm`); longer runs for
    those not judged (:data:`NOT_CONVERGED`). Empty when nothing is left."""
    count = lambda n, one, many: f"{n} {one if n == 1 else many}"
    held = sum(held_back_by_holm(r) for r in rows)
    open_ = [r for r in rows if to_decide(r) and not held_back_by_holm(r)]
    n_tiny = sum(seeds_to_decide(r) > FEASIBLE_SEEDS for r in open_)
    n_open = len(open_) - n_tiny
    n_fragile = sum(holds_across_seeds(r) is False for r in rows)
    n_late = sum(str(r["verdict"]).endswith(NOT_CONVERGED) for r in rows)
    seeds = [f"for the {count(n_open, 'open claim', 'open claims')}, each verdict above says how many" if n_open else "",
             f"the {count(n_fragile, 'decided verdict that could flip needs', 'decided verdicts that could flip need')} "
             "them to hold over the seed means alone" if n_fragile else ""]
    seeds = "; ".join(part for part in seeds if part)
    return ((f"More seeds: {seeds}. " if seeds else "")
            + (f"The {count(n_tiny, 'open claim differs', 'open claims differ')} by less than any feasible number of "
               f"seeds (up to {FEASIBLE_SEEDS}) could resolve, were the measured difference the true one; more "
               "queries would at least bound how small it is. " if n_tiny else "")
            + (f"The {count(held, 'claim', 'claims')} only the Holm correction holds back would need a narrower CI "
               "(more seeds or queries) to clear the correction. " if held else "")
            + (f"Longer runs: the {count(n_late, 'claim', 'claims')} not judged compare{'s' * (n_late == 1)} a run far "
               "from convergence. " if n_late else ""))


def held_back_by_holm(row: Mapping[str, object]) -> bool:
    """An inconclusive claim whose own CI already clears 0 (-margin): only the family's Holm correction
    keeps it undecided, so more seeds are not what it lacks."""
    return row["verdict"] == "inconclusive" and (n := seeds_to_decide(row)) is not None and n <= int(row["seeds"])


def to_decide(row: Mapping[str, object]) -> str:
    """What an inconclusive claim would need, as a clause ("; deciding it would take about n seeds at
    this effect size", :func:`seeds_to_decide`, and which way it would go when that is against the
    claim), or, where only Holm holds it back (:func:`held_back_by_holm`), which way it leans; empty for
    any other verdict."""
    if row["verdict"] != "inconclusive" or not (n := seeds_to_decide(row)):
        return ""
    against = (float(row["ours"]) + float(row.get("margin") or 0)) * (row.get("expected_sign") or 1) < 0
    if held_back_by_holm(row):
        margin = float(row.get("margin") or 0) * (row.get("expected_sign") or 1)
        side = "above" if float(row["ci_low"]) > -margin else "below"
        bar = f"{signed(-margin)} (the claim's margin)" if margin else "0"
        return (f"; its own CI lies {side} {bar}, but not after Holm (Holm-adjusted p = {row['p_holm']:.3f}): "
                f"it leans {'against' if against else 'towards'} the claim")
    way = " (against the claim)" if against else ""
    return (f"; deciding it{way} would take about {n} seed{'s' * (n != 1)} at this effect size" if n <= FEASIBLE_SEEDS else
            f"; no feasible number of seeds would decide an effect this small (about {n})")


def unconverged(row: dict, arms: set[str]) -> dict:
    """``row`` with its verdict replaced by "not judged" when an arm it compares is in ``arms`` (far
    from convergence, :func:`late_groups`): a claim about such models is not judged. The arms
    compared are the row's ``arms`` when it names them (a difference of differences reads four), else
    ``a`` and ``b``."""
    late = [arm for arm in (row.get("arms") or (row.get("a"), row.get("b"))) if arm in arms]
    return dict(row, verdict=f"not judged: {', '.join(late)} {NOT_CONVERGED}") if late else row


def claim_family(rows: Sequence[dict], alpha: float = 0.05) -> pd.DataFrame:
    """A table's claims judged as one family (Holm, :func:`holm_verdicts`); rows that were not judged
    (no differences, or arms far from convergence) keep their verdict and take no part in it."""
    judged = [i for i, r in enumerate(rows) if r["verdict"] in VERDICTS]
    out = [dict(r, p_holm=float("nan")) for r in rows]
    for i, r in zip(judged, holm_verdicts([rows[i] for i in judged], alpha)):
        out[i] = r
    return pd.DataFrame(out)


def display_claims(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A claim family for the page: ``ours [95% CI]``, the paper's number, whether it lies in our CI,
    the Holm-adjusted p, the verdict, whether a decided verdict holds over the seed means alone
    (:func:`holds_across_seeds`) and, for an inconclusive claim, about how many seeds would decide
    it (:func:`seeds_to_decide`; numbers rounded, the raw columns stay in the results)."""
    def shown(r) -> str:
        return "–" if pd.isna(r["ours"]) else interval(r, digits)

    labels = [c for c in table.columns if c not in {"claim", "ours", "ci_low", "ci_high", "paper", "paper_in_ci", "p",
                                                     "p_holm", "verdict", "seeds", "a", "b", "arms", "margin",
                                                     "expected_sign", "seed_low", "seed_high", "seeds_agreeing",
                                                     "caveat"}]
    out = pd.DataFrame({**{c: table[c] for c in labels}, "claim": table["claim"],
                        "ours [95% CI]": table.apply(shown, axis=1),
                        "paper": table["paper"].map(lambda v: "–" if v is None or pd.isna(v) else signed(v, digits)),
                        "paper in CI": table["paper_in_ci"].map({True: "yes", False: "no"}).fillna("–"),
                        "p (Holm)": table["p_holm"].map(lambda v: "–" if pd.isna(v) else "<0.001" if v < 0.001 else f"{v:.3f}"),
                        "verdict": table["verdict"],
                        "holds over seeds": [HOLDS.get(holds_across_seeds(r), "–")
                                             for r in table.to_dict(orient="records")],
                        "seeds to decide": ["Holm" if held_back_by_holm(r) else n
                                            if r["verdict"] == "inconclusive" and (n := seeds_to_decide(r)) else "–"
                                            for r in table.to_dict(orient="records")]})
    if "caveat" in table and table["caveat"].map(lambda v: isinstance(v, str)).any():  # :func:`still_climbing`
        out["read with care"] = table["caveat"].map(
            lambda v: v.removeprefix("; ").removeprefix("read with care: ") if isinstance(v, str) else "–")
    return out
