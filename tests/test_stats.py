"""The study's statistics: per-seed summaries, the paired hierarchical bootstrap, verdicts and Holm."""

import math

import numpy as np
import pandas as pd
import pytest

from lbr_utils.stats import (claim_family, display_claims, fmt, hierarchical_bootstrap, holds_across_seeds, holm,
                             holm_verdicts, judge, judged_claim, mean_std, seed_interval, span, spearman, steps_read,
                             verdict_counts, verdict_from_ci, verdict_lines)

NO_DIFFERENCES = "no per-seed differences to judge"


def _long_table() -> pd.DataFrame:
    """Two models, three seeds: A - B is +0.10, +0.20, -0.05 per seed; seed 3 has A only."""
    rows = [("A", 0, 0.50), ("B", 0, 0.40), ("A", 1, 0.60), ("B", 1, 0.40), ("A", 2, 0.30), ("B", 2, 0.35),
            ("A", 3, 0.90)]
    return pd.DataFrame(rows, columns=["model", "seed", "score"])


# --- the per-seed summaries of the chapters' tables --------------------------------------------------------


def test_mean_std_and_fmt_match_a_hand_computation():
    out = mean_std(_long_table(), ["model"])
    b = [0.40, 0.40, 0.35]
    assert out.loc["B", "mean"] == pytest.approx(100 * sum(b) / 3)
    assert out.loc["B", "std"] == pytest.approx(100 * math.sqrt(sum((x - sum(b) / 3) ** 2 for x in b) / 2))
    assert out.loc["A", "seeds"] == 4
    assert fmt(34.21, 1.26) == "34.2 ± 1.3" and fmt(34.21, float("nan")) == "34.2"


def test_span_prints_one_number_where_both_ends_print_alike():
    assert span([5.2, 4.44, 4.9]) == "4.4-5.2"
    assert span([1.04, 0.96], "{:.0f}") == "1"
    assert span([400, 500, 400], "{}") == "400-500"


def test_steps_read_gives_each_seeds_step_over_its_run_length():
    table = pd.DataFrame({"model": ["A", "A", "A", "B", "C", "BM25"], "seed": [2, 0, 1, 0, 0, 0],
                          "steps": [500, 400, 800, None, 80.0, 0]})
    totals = pd.DataFrame({"model": ["A", "A", "A"], "seed": [0, 1, 2], "steps": [800, 800, 700]})
    read = steps_read(table, totals)
    assert read.to_dict() == {"A": "400/800, 800/800, 500/700", "B": "–", "C": "80", "BM25": "–"}
    assert steps_read(table).to_dict()["A"] == "400, 800, 500"
    assert steps_read(table.drop(columns="steps")).to_dict() == {"A": "–", "B": "–", "C": "–", "BM25": "–"}


def test_spearman_by_hand():
    # rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


@pytest.mark.parametrize("call", [lambda: hierarchical_bootstrap([]), lambda: hierarchical_bootstrap({}),
                                  lambda: judge([])])
def test_nothing_to_judge_is_a_clear_error(call):
    with pytest.raises(ValueError, match=NO_DIFFERENCES):
        call()


def test_malformed_seeds_are_refused():
    with pytest.raises(ValueError, match="a seed has no per-query differences"):
        hierarchical_bootstrap([[0.1, 0.2], []])
    with pytest.raises(ValueError, match="1-D"):  # a flat array is one seed's queries: pass [values]
        hierarchical_bootstrap(np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="finite"):
        hierarchical_bootstrap([[0.1, float("nan")]])
    with pytest.raises(ValueError, match="expected_sign"):
        judge([[0.1, 0.2]], expected_sign=0)


# --- the paired hierarchical bootstrap ----------------------------------------------------------------------


def _simulate(rng: np.random.Generator, effect: float, seed_sd: float, query_sd: float, seeds: int = 3,
              queries: int = 300) -> list[np.ndarray]:
    """Per-query differences: the true effect, plus a shift per seed (the run), plus noise per query."""
    return [effect + rng.normal(0, seed_sd) + rng.normal(0, query_sd, queries) for _ in range(seeds)]


def test_the_ci_covers_a_known_effect_about_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    effect, trials = 0.02, 200
    covered = 0
    for trial in range(trials):
        r = hierarchical_bootstrap(_simulate(rng, effect, seed_sd=0.01, query_sd=0.3), n_boot=1000, rng_seed=trial)
        covered += r.low <= effect <= r.high
    # Binomial(200, 0.95) has sd 3.1 hits: 176..198 is > 4 sd below and about 2.5 sd above the nominal 190.
    assert 176 <= covered <= 198, f"covered {covered} of {trials}"


def test_seed_variation_widens_the_ci_beyond_the_query_noise():
    """Seeds that disagree leave the claim open, however many queries each seed has: a query-only
    bootstrap would call every one of these seeds' effects certain."""
    rng = np.random.default_rng(0)
    diffs = [m + rng.normal(0, 0.01, 1000) for m in (0.08, -0.06, 0.02)]
    r = hierarchical_bootstrap(diffs, n_boot=2000)
    assert r.low < 0 < r.high
    assert r.low < -0.03 and r.high > 0.05  # spans most of the seed means, not +-0.001 around 0.013
    assert verdict_from_ci(r.low, r.high) == "inconclusive"


def test_the_point_estimate_weighs_every_seed_the_same():
    r = hierarchical_bootstrap({"s0": [1.0, 1.0, 1.0, 1.0], "s1": [0.0]}, n_boot=200)
    assert r.mean == pytest.approx(0.5)  # the pooled mean would be 0.8
    assert (r.n_seeds, r.n_queries) == (2, 5)


def test_one_seed_is_the_plain_query_bootstrap():
    rng = np.random.default_rng(7)
    x = rng.normal(0.05, 0.3, 400)
    r = hierarchical_bootstrap([x], n_boot=4000, rng_seed=1)
    assert r.mean == x.mean()
    assert (r.n_seeds, r.n_queries) == (1, 400)
    other = np.random.default_rng(99)
    plain = x[other.integers(x.size, size=(4000, x.size))].mean(axis=1)
    half_width = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    for ours, theirs in [(r.low, np.quantile(plain, 0.025)), (r.high, np.quantile(plain, 0.975)),
                         (r.low, x.mean() - half_width), (r.high, x.mean() + half_width)]:
        assert ours == pytest.approx(theirs, abs=0.1 * half_width)


def test_the_p_value_is_the_dual_of_the_ci():
    """Same resamples (same rng_seed), any level: the CI excludes 0 exactly when p < 1 - confidence."""
    rng = np.random.default_rng(3)
    for effect in (0.0, 0.02, 0.04, -0.03):
        diffs = _simulate(rng, effect, seed_sd=0.01, query_sd=0.3)
        p = hierarchical_bootstrap(diffs, n_boot=1000).p_value
        assert 1 / 1000 <= p <= 1
        # the usual levels, and the two just either side of p, where an interpolated quantile slips
        for level in (0.8, 0.9, 0.95, 0.99, 1 - p + 0.5 / 1000, 1 - p - 0.5 / 1000):
            if not 1 / 1000 < 1 - level < 1:  # p cannot resolve levels beyond 1 / n_boot
                continue
            r = hierarchical_bootstrap(diffs, n_boot=1000, confidence=level)
            assert (not r.low <= 0 <= r.high) == (p < 1 - level), (effect, level, p, r)


def test_flipping_the_differences_flips_the_ci_exactly():
    diffs = _simulate(np.random.default_rng(5), 0.03, seed_sd=0.01, query_sd=0.3)
    r = hierarchical_bootstrap(diffs, n_boot=1000)
    flipped = hierarchical_bootstrap([-d for d in diffs], n_boot=1000)
    assert (flipped.mean, flipped.low, flipped.high, flipped.p_value) == (-r.mean, -r.high, -r.low, r.p_value)


# --- verdicts -----------------------------------------------------------------------------------------------


def test_verdict_from_ci_gives_each_verdict():
    assert verdict_from_ci(0.01, 0.05) == "reproduced"
    assert verdict_from_ci(-0.05, -0.01) == "contradicted"
    assert verdict_from_ci(-0.01, 0.05) == "inconclusive"
    assert verdict_from_ci(0.0, 0.05) == "inconclusive"  # touching 0 still allows no difference
    with pytest.raises(ValueError, match="reversed"):
        verdict_from_ci(0.05, 0.01)


def test_judge_gives_each_verdict_on_hand_made_differences():
    up = [[0.10, 0.12, 0.08, 0.11], [0.09, 0.13, 0.10, 0.10], [0.12, 0.10, 0.11, 0.09]]
    down = [[-v for v in seed] for seed in up]
    mixed = [[0.10, -0.10, 0.05, -0.05], [-0.08, 0.09, 0.0, -0.01], [0.02, -0.03, 0.04, -0.02]]
    assert judge(up, n_boot=1000)["verdict"] == "reproduced"
    assert judge(down, n_boot=1000)["verdict"] == "contradicted"
    assert judge(mixed, n_boot=1000)["verdict"] == "inconclusive"
    # "A is worse than B" (expected -1) is reproduced by A - B below 0, reported as A - B.
    worse = judge(down, expected_sign=-1, n_boot=1000)
    assert worse["verdict"] == "reproduced"
    assert worse["ci_high"] < 0 and worse["mean"] == pytest.approx(-np.mean(up))
    assert judge(up, expected_sign=-1, n_boot=1000)["verdict"] == "contradicted"
    assert judge(up, n_boot=1000)["p"] == pytest.approx(1 / 1000)  # no resample crossed 0


def test_paper_in_ci_is_true_false_or_none():
    up = [[0.10, 0.12, 0.08, 0.11], [0.09, 0.13, 0.10, 0.10], [0.12, 0.10, 0.11, 0.09]]
    assert judge(up, paper=0.105, n_boot=1000)["paper_in_ci"] is True
    assert judge(up, paper=0.30, n_boot=1000)["paper_in_ci"] is False
    assert judge(up, paper=None, n_boot=1000)["paper_in_ci"] is None
    assert judge(up, paper=float("nan"), n_boot=1000)["paper_in_ci"] is None
    # the paper's A - B is compared in its own direction, also for a claim that A is worse
    down = [[-v for v in seed] for seed in up]
    assert judge(down, expected_sign=-1, paper=-0.105, n_boot=1000)["paper_in_ci"] is True
    assert judge(down, expected_sign=-1, paper=0.105, n_boot=1000)["paper_in_ci"] is False


def test_judge_reports_the_bootstrap():
    diffs = _simulate(np.random.default_rng(11), 0.02, seed_sd=0.01, query_sd=0.3)
    out, r = judge(diffs, n_boot=500, rng_seed=4), hierarchical_bootstrap(diffs, n_boot=500, rng_seed=4)
    assert set(out) == {"mean", "ci_low", "ci_high", "p", "verdict", "paper_in_ci"}
    assert (out["mean"], out["ci_low"], out["ci_high"], out["p"]) == (r.mean, r.low, r.high, r.p_value)


# --- Holm across a table's claims ---------------------------------------------------------------------------


def test_holm_matches_a_hand_computation():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.4, 0.01]) == pytest.approx([0.4, 0.02])
    assert holm([0.3, 0.6, 0.9]) == pytest.approx([0.9, 1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02]) and holm([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, float("nan")])


def test_holm_turns_weak_decisions_into_inconclusive():
    claims = [{"claim": "a", "p": 0.01, "verdict": "reproduced"}, {"claim": "b", "p": 0.04, "verdict": "reproduced"},
              {"claim": "c", "p": 0.03, "verdict": "contradicted"}, {"claim": "d", "p": 0.5, "verdict": "inconclusive"}]
    out = holm_verdicts(claims)
    assert [r["verdict"] for r in out] == ["reproduced", "inconclusive", "inconclusive", "inconclusive"]
    assert [r["p_holm"] for r in out] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert [r["claim"] for r in out] == ["a", "b", "c", "d"] and claims[1]["verdict"] == "reproduced"
    strong = holm_verdicts([{"p": 0.001, "verdict": "contradicted"}, {"p": 0.002, "verdict": "reproduced"}])
    assert [r["verdict"] for r in strong] == ["contradicted", "reproduced"]


def test_a_family_of_one_keeps_its_ci_verdict():
    rng = np.random.default_rng(8)
    for effect in (0.0, 0.015, 0.03, 0.06, -0.04):
        claim = judge(_simulate(rng, effect, seed_sd=0.01, query_sd=0.3), n_boot=1000)
        assert holm_verdicts([claim])[0]["verdict"] == claim["verdict"]


def test_per_query_differences_pair_arms_within_each_seed():
    from lbr_utils.stats import per_query_differences

    table = pd.DataFrame([{"model": "A", "seed": 0, "per_query": [1.0, 0.5]}, {"model": "B", "seed": 0, "per_query": [0.5, 0.5]},
                          {"model": "A", "seed": 1, "per_query": [0.0, 1.0]}])  # seed 1 lacks B: left out
    diffs = per_query_differences(table, "A", "B")
    assert list(diffs) == [0] and diffs[0].tolist() == [0.5, 0.0]
    with pytest.raises(ValueError, match="different query lists"):
        per_query_differences(pd.concat([table, pd.DataFrame([{"model": "B", "seed": 1, "per_query": [0.1]}])]), "A", "B")
    with pytest.raises(ValueError, match="more than one row"):
        per_query_differences(pd.concat([table, table]), "A", "B")


def test_a_claim_row_scales_its_ci_and_a_margin_makes_it_non_inferiority():
    from lbr_utils.stats import claim_family, judged_claim, seeds_to_decide

    worse = {s: np.full(50, -0.02) + np.linspace(-0.01, 0.01, 50) for s in range(3)}  # A is 2 points worse
    plain = judged_claim("A beats B", worse, +1, paper=-1.0, domain="x")
    assert plain["verdict"] == "contradicted" and plain["ours"] == pytest.approx(-2.0)
    assert plain["ci_low"] <= -2.0 <= plain["ci_high"] < 0 and not plain["paper_in_ci"] and plain["domain"] == "x"
    within = judged_claim("A keeps B's level", worse, +1, margin=0.05)  # at most 5 points worse: it is
    assert within["verdict"] == "reproduced" and within["ours"] == pytest.approx(-2.0)
    beyond = judged_claim("A keeps B's level", worse, +1, margin=0.01)
    assert beyond["verdict"] == "contradicted"
    empty = judged_claim("nothing ran", {}, +1)
    family = claim_family([plain, empty])
    assert family.verdict.tolist() == ["contradicted", NO_DIFFERENCES] and np.isnan(family.p_holm[1])
    noisy = judged_claim("A beats B", {s: np.random.default_rng(s).normal(0.01, 0.3, 40) for s in range(3)})
    assert noisy["verdict"] == "inconclusive" and seeds_to_decide(noisy) > 3 and seeds_to_decide(plain) is None


def test_last_quarter_gain_and_late_models_by_hand():
    """The gain is the last quarter's own: the score at the end minus the score at the quarter's
    start, interpolated, per dev query where the curve has them. A run that rose and then stopped is
    flat (a line through the second half would credit its rise); one surely still climbing is far
    from convergence; so is one without a curve; a noisy gain around a point is judged."""
    from lbr_utils.stats import late_models, quarter_gain_table, quarter_gains

    def last_quarter_gain(curve, end):  # (quarter start, score at the end, mean gain)
        found = quarter_gains(curve, end)
        return None if found is None else (found[0], found[1], float(found[2].mean()))

    curve = lambda points: [{"step": s, "dev NDCG@10": v} for s, v in points]
    climbing = curve([(25, 0.30), (50, 0.40), (75, 0.45), (100, 0.50)])
    stopped = curve([(100, 0.764), (200, 0.811), (300, 0.857), (400, 0.856)])  # the LBR run of the docstring
    assert last_quarter_gain(climbing, 100) == (75, pytest.approx(50.0), pytest.approx(5.0))
    # a snapshot at 50: its quarter starts at 37.5, interpolated to 0.35 between steps 25 and 50
    assert last_quarter_gain(climbing, 50) == (37.5, pytest.approx(40.0), pytest.approx(5.0))
    assert last_quarter_gain(stopped, 400)[2] == pytest.approx(-0.1)
    assert last_quarter_gain(climbing, 60) is None and last_quarter_gain(climbing[-1:], 100) is None
    # per query: two queries, interpolated at 75 (0.45 and 0.55) between steps 50 and 100 -> +5 and -5 points
    per_query = [{"step": 50, "dev NDCG@10": 0.5, "dev per query": [0.4, 0.6]},
                 {"step": 100, "dev NDCG@10": 0.5, "dev per query": [0.5, 0.5]}]
    assert quarter_gains(per_query, 100)[2] == pytest.approx([5.0, -5.0])
    # per-query scores only where every point has them alike, and only for NDCG; a failed point is no evidence
    assert quarter_gains([per_query[0], dict(per_query[1], **{"dev per query": None})], 100)[2] == pytest.approx([0.0])
    assert quarter_gains([dict(p, **{"dev word F1": 0.1 * i}) for i, p in enumerate(per_query)], 100,
                         key="dev word F1")[2] == pytest.approx([5.0])
    # another score's per-text list (the inverter's "dev word F1 per text") gives one gain per text
    per_text = [dict(p, **{"dev word F1": 0.1 * i, "dev word F1 per text": [0.1 * i, 0.2 * i]})
                for i, p in enumerate(per_query)]
    assert quarter_gains(per_text, 100, key="dev word F1")[2] == pytest.approx([5.0, 10.0])
    assert quarter_gains([per_query[0], dict(per_query[1], **{"dev per query": [0.5, float("nan")]})], 100) is None
    training = pd.DataFrame([{"model": "A", "seed": s, "steps": 100, "dev_curve": climbing} for s in (0, 1)]
                            + [{"model": "B", "seed": s, "steps": 400, "dev_curve": stopped} for s in (0, 1)]
                            + [{"model": "C", "seed": 0, "steps": 100, "dev_curve": []}])
    assert late_models(training) == {"A", "C"}  # C has no curve to show it flattened
    assert late_models(training.iloc[:0]) == set()  # a part with no stage-2 runs (chapter 5b's ratio sweep)
    # 100 dev queries whose gains average +1.5 with a spread of 10 points: not flat, but not surely
    # climbing by a point either (the CI holds 1), so its claims are judged
    rng = np.random.default_rng(0)
    noisy = pd.DataFrame([{"model": "D", "seed": s, "gains": 1.5 + 10 * rng.standard_normal(100)} for s in (0, 1, 2)])
    [row] = quarter_gain_table(noisy, ["model"]).to_dict(orient="records")
    assert row["gain CI low"] < 1 < row["gain"] and not row["flattened"] and not row["far from convergence"]
    sure = noisy.assign(gains=[g + 4 for g in noisy.gains])  # the same noise around +5.5 points
    assert quarter_gain_table(sure, ["model"])["far from convergence"].all()
    # one run whose curve keeps a mean only: one gain, no CI; not flattened, but not surely climbing either
    [alone] = quarter_gain_table(pd.DataFrame([{"model": "E", "seed": 0, "gains": np.array([5.5])}]),
                                 ["model"]).to_dict(orient="records")
    assert alone["gain"] == pytest.approx(5.5) and not alone["flattened"] and not alone["far from convergence"]
    assert np.isinf(alone["gain CI low"]) and np.isinf(alone["gain CI high"])
    one = pd.DataFrame([{"model": "A", "seed": 0, "steps": 100, "dev_curve": climbing}])
    assert late_models(one) == set()
    from lbr_utils.stats import gain_table, still_climbing
    assert still_climbing({"a": "A", "b": "B"}, gain_table(one))["caveat"] == (
        "; read with care: A had not flattened (its last quarter gained +5.0 (one run, no CI))")


def test_a_verdict_on_an_arm_that_has_not_flattened_stands_with_a_caveat():
    """The middle ground of the rule: D's mean gain is over a point but its CI holds 1, so its claim is
    judged, and its verdict line and table say to read it with care; a flat arm adds nothing, and a far
    one is the gate's (not judged), not a caveat's."""
    from lbr_utils.stats import gain_table, show_gains, still_climbing

    rng = np.random.default_rng(0)
    flat = [{"step": 50, "dev NDCG@10": 0.5, "dev per query": [0.5] * 100},
            {"step": 100, "dev NDCG@10": 0.5, "dev per query": [0.5] * 100}]
    rising = lambda: [{"step": 50, "dev NDCG@10": 0.5, "dev per query": [0.5] * 100},  # each seed its own noise
                      {"step": 100, "dev NDCG@10": 0.5, "dev per query": list(0.53 + 0.1 * rng.standard_normal(100))}]
    training = pd.DataFrame([{"model": "flat", "seed": s, "steps": 100, "dev_curve": flat} for s in (0, 1, 2)]
                            + [{"model": "D", "seed": s, "steps": 100, "dev_curve": rising()} for s in (0, 1, 2)])
    gains = gain_table(training)
    d = gains.set_index("model").loc["D"]
    assert d["gain CI low"] < 1 < d["gain"] and not d["far from convergence"]
    row = {"claim": "D beats flat", "ours": 3.0, "ci_low": 1.0, "ci_high": 5.0, "paper": None, "paper_in_ci": None,
           "p_holm": 0.01, "verdict": "reproduced", "seeds": 3, "a": "D", "b": "flat"}
    marked = still_climbing(row, gains)
    assert marked["caveat"].startswith("; read with care: D had not flattened (its last quarter gained +")
    assert "caveat" not in still_climbing(dict(row, a="flat", b="flat"), gains)
    assert verdict_lines(pd.DataFrame([marked]))[0].endswith(marked["caveat"] + ".")
    assert display_claims(pd.DataFrame([marked, dict(row, a="flat")]))["read with care"].tolist()[1] == "–"
    assert show_gains(gains).set_index("model").loc["flat", "flattened (< 1)"] == "yes"


def test_seeds_to_decide_reads_a_non_inferiority_claim_against_its_margin():
    """-1 [-3, +1] with a 2-point margin is +1 [-1, +3] from the margin: half-width 2 over 1 -> 4x the
    3 seeds; the same numbers without a margin are 1 point from 0 either way, the same 12."""
    from lbr_utils.stats import seeds_to_decide

    row = {"verdict": "inconclusive", "ours": -1.0, "ci_low": -3.0, "ci_high": 1.0, "seeds": 3, "margin": 2.0}
    assert seeds_to_decide(row) == 12
    assert seeds_to_decide(dict(row, ours=-1.5, margin=1.0)) == 3 * 16  # 0.5 from the margin, half-width 2
    assert seeds_to_decide(dict(row, margin=float("nan"))) == 12


def test_what_this_shows_states_each_claims_number_in_its_own_unit():
    from lbr_utils.stats import verdict_lines

    table = pd.DataFrame([
        {"claim": "A beats B", "ours": 2.0, "ci_low": 0.5, "ci_high": 3.5, "verdict": "reproduced", "domain": "medical"},
        {"claim": "A is faster", "ours": -4.0, "ci_low": -6.0, "ci_high": -2.0, "verdict": "contradicted",
         "unit": "% of the time"}])
    assert verdict_lines(table) == [
        "- **reproduced**: A beats B (medical): +2.0 NDCG@10 points [+0.5, +3.5].",
        "- **contradicted**: A is faster: -4.0% of the time [-6.0, -2.0]."]


def test_the_seed_interval_is_students_t_over_the_seed_means():
    """Seed means 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.3027, so 2 -+ 4.3027 / sqrt(3) = [-0.484, 4.484]."""
    low, high = seed_interval([[1.0, 1.0], [2.0, 2.0, 2.0], [3.0]])
    assert low == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-5) and high == pytest.approx(2 + 4.302653 / math.sqrt(3), abs=1e-5)
    assert seed_interval([[1.0, 2.0, 3.0]]) is None  # one seed: nothing to say about seeds


def test_a_verdict_the_seed_means_do_not_carry_is_flagged_as_one_that_could_flip():
    """Seeds that agree in sign but scatter widely: the bootstrap (query noise tiny) decides, three
    seed means with t(2) do not; seeds that agree closely hold either way."""
    rng = np.random.default_rng(0)
    scattered = {s: m + 0.001 * rng.standard_normal(300) for s, m in enumerate([0.01, 0.06, 0.11])}
    row = judged_claim("A beats B", scattered, +1)
    assert row["verdict"] == "reproduced" and row["seed_low"] < 0 < row["seed_high"]
    assert holds_across_seeds(row) is False and "could flip" in verdict_lines(pd.DataFrame([row]))[0]
    assert row["seeds_agreeing"] == 3 and "all 3 seed means lie on its side" in verdict_lines(pd.DataFrame([row]))[0]
    split = judged_claim("A beats B", {s: m + 0.001 * rng.standard_normal(300) for s, m in enumerate([-0.02, 0.06, 0.11])})
    assert split["seeds_agreeing"] == 2 and "all 3" not in verdict_lines(pd.DataFrame([split]))[0]
    assert display_claims(claim_family([row]))["holds over seeds"].tolist() == ["no: could flip"]
    tight = judged_claim("A beats B", {s: 0.05 + 0.001 * rng.standard_normal(300) + 0.001 * s for s in range(3)}, +1)
    assert holds_across_seeds(tight) is True and "could flip" not in verdict_lines(pd.DataFrame([tight]))[0]
    worse = judged_claim("A is worse than B", {s: -v for s, v in scattered.items()}, -1)  # the claim's side is below 0
    assert worse["verdict"] == "reproduced" and holds_across_seeds(worse) is False
    assert holds_across_seeds(dict(row, verdict="inconclusive")) is None
    # every sign, both decided verdicts, and a margin, on tight seeds (interval [4.8, 5.2], x100 scale)
    for low, high, sign, verdict, margin, held in [
            (4.8, 5.2, -1, "reproduced", 0.0, False),    # "A worse than B" but A - B > 0: does not hold...
            (-5.2, -4.8, -1, "reproduced", 0.0, True),   # ...and holds when A - B < 0 over seeds
            (-5.2, -4.8, +1, "contradicted", 0.0, True),
            (4.8, 5.2, -1, "contradicted", 0.0, True),
            (-5.2, -4.8, +1, "contradicted", 10.0, False),  # within a 10-point margin: not below -margin
            (-15.2, -14.8, +1, "contradicted", 10.0, True)]:
        case = dict(row, seed_low=low, seed_high=high, expected_sign=sign, verdict=verdict, margin=margin)
        assert holds_across_seeds(case) is held, case
    # non-inferiority: "at most 10 points worse" holds over seeds when the seed interval lies above -10
    assert holds_across_seeds(dict(row, margin=10.0)) is True
    assert "1 of the 1 decided verdicts with several seeds does not hold" in verdict_counts({"t": claim_family([row])})


def test_each_training_run_counts_once():
    """A stage-1 checkpoint stored in two models' cells is one run (under the first name); two runs
    that only share a duration are two. Chapter 5a's compute total sums each run once."""
    from lbr_utils.stats import each_run_once
    from lbr_utils.studies.ch05a_lbr_stages import compute_seconds

    shared = {"domain": "d", "seed": 0, "stage": 1, "seconds": 5.0, "steps": 8, "final_loss": 2.0}
    rows = [dict(shared, model="LLM+IB-GL"), dict(shared, model="LLM+IB-GL+CL"),
            dict(shared, model="LLM+CL", stage=2, final_loss=0.1), dict(shared, model="LLM+GL+CL", stage=2, final_loss=0.2)]
    assert each_run_once(pd.DataFrame(rows)).model.tolist() == ["LLM+IB-GL", "LLM+CL", "LLM+GL+CL"]
    assert compute_seconds(rows) == 15.0 and compute_seconds([]) == 0.0


def test_a_claim_only_holm_holds_back_says_which_way_it_leans_not_how_many_seeds():
    """Three seeds, a CI below 0 on its own, Holm's p above 0.05: more seeds are not what it lacks. An
    undecided claim whose mean goes the other way says that deciding it would go against it."""
    from lbr_utils.stats import to_decide

    row = {"claim": "a", "ours": -3.5, "ci_low": -6.4, "ci_high": -0.6, "paper": 11.9, "paper_in_ci": False,
           "p_holm": 0.079, "verdict": "inconclusive", "seeds": 3, "expected_sign": 1}
    assert to_decide(row) == ("; its own CI lies below 0, but not after Holm (Holm-adjusted p = 0.079): it leans "
                              "against the claim")
    assert display_claims(pd.DataFrame([row]))["seeds to decide"].tolist() == ["Holm"]
    # a non-inferiority claim (at most 2 points worse) is held against -2, and its clause says so
    worse = dict(row, ours=-0.6, ci_low=-1.8, ci_high=0.0, margin=2.0)
    assert to_decide(worse).startswith("; its own CI lies above -2.0 (the claim's margin), but not after Holm")
    assert to_decide(dict(worse, ours=-8.4, ci_low=-14.6, ci_high=-3.1)).startswith("; its own CI lies below -2.0")
    wide = dict(row, ci_low=-8.0, ci_high=1.0)
    assert to_decide(wide).startswith("; deciding it (against the claim) would take about")
    assert to_decide(dict(wide, ours=3.5, ci_low=-1.0, ci_high=8.0)).startswith("; deciding it would take about")


def test_a_bound_that_rounds_to_zero_prints_the_digits_that_show_its_side():
    from lbr_utils.stats import interval, signed

    assert signed(-0.04) == "-0.04" and signed(-0.06) == "-0.1" and signed(2.345, 2) == "+2.35"
    assert signed(0.0) == "+0.0" and signed(0.004) == "+0.004" and signed(1e-9) == "+0.0000"
    assert interval({"ours": -1.8, "ci_low": -3.6, "ci_high": -0.01}) == "-1.8 [-3.6, -0.01]"


def test_claim_lines_put_a_claims_domains_side_by_side():
    from lbr_utils.stats import claim_family, claim_lines, judged_claim

    rows = [judged_claim("A beats B", {0: np.full(20, d)}, +1, domain=name) for name, d in (("code", 0.05), ("medical", -0.05))]
    lines = claim_lines(claim_family(rows))
    assert lines == ["- **A beats B**: code: reproduced, +5.0 [+5.0, +5.0]; medical: contradicted, -5.0 [-5.0, -5.0]."]


def test_an_answer_sentence_and_its_seed_clause_follow_the_verdicts():
    """A reproduced row reads its "holds" sentence with its numbers; a contradicted one whose seed means
    straddle 0 adds that a rerun could flip it; the seed clause counts one open claim (1 point at
    [-1, +3] on 3 seeds: 12 seeds) and one decided claim that could flip, and is empty when neither; an
    open claim no feasible number of seeds would decide is not sent to more seeds."""
    from lbr_utils.stats import seeds_wanted, verdict_sentence

    up = {"a": "A", "b": "B", "verdict": "reproduced", "ours": 2.0, "ci_low": 0.5, "ci_high": 3.5, "seeds": 3,
          "seed_low": 0.2, "seed_high": 3.8}
    down = dict(up, verdict="contradicted", ours=-2.0, ci_low=-3.5, ci_high=-0.5, seed_low=-4.0, seed_high=0.3,
                seeds_agreeing=2)
    open_ = dict(up, verdict="inconclusive", ours=1.0, ci_low=-1.0, ci_high=3.0)
    assert verdict_sentence(up, "yes", "no", "open") == "yes (A minus B: +2.0 [+0.5, +3.5], reproduced)."
    assert verdict_sentence(down, "yes", "no", "open").startswith(
        "no (A minus B: -2.0 [-3.5, -0.5], contradicted; over seeds alone, the t-interval of the 3 seed means")
    assert verdict_sentence(open_, "yes", "no", "open").startswith("open (A minus B: +1.0")
    assert seeds_wanted([up, down, open_]) == ("More seeds: for the 1 open claim, each verdict above says how many; "
                                               "the 1 decided verdict that could flip needs them to hold over the "
                                               "seed means alone. ")
    assert seeds_wanted([up]) == ""
    # 0.1 points at [-1.9, +2.1] on 3 seeds would take 1200: no feasible number, so no "more seeds" for it
    tiny = dict(open_, ours=0.1, ci_low=-1.9, ci_high=2.1)
    assert seeds_wanted([up, tiny]) == ("The 1 open claim differs by less than any feasible number of seeds (up to "
                                        "30) could resolve, were the measured difference the true one; more queries "
                                        "would at least bound how small it is. ")
    assert seeds_wanted([open_, tiny]).startswith("More seeds: for the 1 open claim,")
