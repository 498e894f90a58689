"""The study modules: one shape for every chapter, cells computed once, claims judged from the files,
and the chapter 7 scoring helpers."""

import numpy as np
import pandas as pd
import pytest
import torch

from lbr_utils.models import build_tiny
from lbr_utils.profiles import get_profile, lbr_profile
from lbr_utils.stats import display_claims
from lbr_utils.studies import CHAPTERS, _lbr_cells, study


def survey_claims(records: dict) -> pd.DataFrame:
    """Every chapter's survey claims from ``records``, as the report gathers and shows them."""
    tables = [t for name in CHAPTERS if "survey" in (t := study(name).claims(records))]
    return display_claims(pd.concat([t["survey"] for t in tables], ignore_index=True)) if tables else pd.DataFrame()


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_chapter_has_the_same_shape(name):
    """A study names itself like its chapter, runs, and judges nothing without its own results file."""
    module = study(name)
    assert module.NAME == name and callable(module.run) and module.TITLE
    assert module.claims({}) == {}
    with pytest.raises(ValueError, match="unknown chapter"):
        study("ch99_nothing")


def test_a_cell_is_trained_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    from lbr_utils import lbr

    monkeypatch.setenv("LBR_RUN_CACHE", str(tmp_path))
    profile = get_profile("smoke", model="tiny")
    stage1, stage2 = lbr.configs(profile, 0)
    first = _lbr_cells.run_cell(profile, "medical", 0, "IB-GL+CL", stage1, stage2)

    def fail(*args, **kwargs):
        raise AssertionError("trained again instead of reading the cache")

    monkeypatch.setattr(lbr, "train_contrastive", fail)
    monkeypatch.setattr(lbr, "stage1_model", fail)
    again = _lbr_cells.run_cell(profile, "medical", 0, "same run, other name", stage1, stage2)
    assert again["retrieval"] == first["retrieval"] and again["name"] == "same run, other name"
    assert [row["stage"] for row in first["training"]] == [1, 2]


def _stages_record(lbr_gain: float, seeds=(0, 1, 2), queries: int = 60) -> dict:
    """A chapter-5a results record: every arm's per-query NDCG@10 on every seed. LBR's queries score
    ``lbr_gain`` above the CL-only bottleneck run at equal compute; noise is per query."""
    rng = np.random.default_rng(0)
    base = {"LLM": 0.10, "LLM+GL": 0.12, "LLM+IB-GL": 0.20, "LLM+CL": 0.40, "LLM+GL+CL": 0.38,
            "LLM+CL (last token)": 0.35, "LLM+CL (mean)": 0.30, "BM25": 0.45, "MiniLM": 0.42, "MiniLM+CL": 0.50}
    rows = []

    def add(model, seed, score, s1, s2):
        per_query = np.clip(score + rng.normal(0, 0.02, queries), 0, 1).tolist()
        rows.append({"model": model, "domain": "medical", "seed": seed, "metric": "NDCG@10", "stage1_steps": s1,
                     "stage2_steps": s2, "steps": s1 + s2, "per_query": per_query, "score": float(np.mean(per_query))})

    for seed in seeds:
        for model, score in base.items():
            s1 = 4 if "GL" in model else 0
            s2 = 0 if model in ("LLM", "LLM+GL", "LLM+IB-GL", "BM25", "MiniLM") else (6 if model == "MiniLM+CL" else 2)
            add(model, seed, score, s1, s2)
            if model in ("LLM+CL", "LLM+CL (last token)"):
                add(model, seed, score + 0.05, 0, 6)  # the same run at equal compute
        add("LLM+IB-GL+CL", seed, base["LLM+CL"] + 0.05 + lbr_gain, 4, 2)
    generation = [{"model": m, "domain": "medical", "seed": s, "BLEU-4": b, "ROUGE-L": 2 * b,
                   "BLEU-4 per question": [b] * 10, "ROUGE-L per question": [2 * b + (i % 3) for i in range(10)]}
                  for m, b in [("LLM", 1.0), ("LLM+GL", 10.0), ("LLM+IB-GL", 9.5), ("LLM+CL", 0.5)] for s in seeds]
    curve = [{"step": step, "dev NDCG@10": 0.5 + 0.001 * min(step, 4)} for step in (1, 2, 4, 6)]
    loss = [{"step": step, "loss": 2.0 - 0.1 * step} for step in (1, 2, 3, 4)]
    training = [{"model": "LLM+CL", "domain": "medical", "seed": s, "stage": 2, "steps": 6, "seconds": 1.0,
                 "final_loss": 0.5, "dev_curve": curve, "loss_curve": []} for s in seeds]
    training += [{"model": "LLM+IB-GL", "domain": "medical", "seed": s, "stage": 1, "steps": 4, "seconds": 2.0,
                  "final_loss": 1.6, "dev_curve": [], "loss_curve": loss} for s in seeds]
    separation = [{"model": m, "domain": "medical", "seed": s, "separation_ratio": base[m] * 10 + s}
                  for m in ("LLM", "LLM+GL", "LLM+IB-GL") for s in seeds]
    compression = [{"domain": "medical", "texts": "stage-1 inputs (GL questions)", "median tokens": 8.0, "r": 8.0, "k": 7,
                    "effective ratio n / k": 8 / 7}]
    splits = [{"domain": "medical", "gl": 8, "cl": 8, "dev": 0, "eval queries": queries, "corpus": 100}]
    return {"metrics": {"retrieval": rows, "generation": generation, "training": training, "separation": separation,
                        "compression": compression, "splits": splits},
            "config": {"domains": ["medical"], "stage1": {"steps": 4, "batch_size": 2}, "stage2": {"steps": 2, "batch_size": 2},
                       "profile": {"model": "m", "n_gl": 1, "n_cl": 1, "n_eval": queries, "max_length": 8, "batch_size": 2}},
            "provenance": {"seeds": list(seeds)}}


@pytest.mark.parametrize("gain, verdict", [(0.10, "reproduced"), (-0.10, "contradicted"), (0.0, "inconclusive")])
def test_lbr_claims_are_judged_on_per_query_differences(gain, verdict):
    """At equal compute LBR is compared with the best CL-only LLM arm (here the bottleneck run at
    equal compute, which beats the last token): a clear gain, a clear loss and none give the three
    verdicts; the numbers are the mean per-query difference x100."""
    from lbr_utils.studies.ch05a_lbr_stages import EQUAL, HEADLINE, judged

    table = judged(_stages_record(gain))[HEADLINE]
    head = table.iloc[0]
    assert head["claim"] == f"LBR beats LLM+CL{EQUAL} (the best CL-only LLM on dev)"
    assert head["verdict"] == verdict and head["ours"] == pytest.approx(100 * gain, abs=1.0)
    assert head["ci_low"] < head["ours"] < head["ci_high"] and not np.isnan(head["p_holm"])


def test_stage_claims_read_the_paper_protocol_and_the_paper_numbers():
    from lbr_utils.results import paper_numbers
    from lbr_utils.studies.ch05a_lbr_stages import judged

    table = judged(_stages_record(0.10))["Table 3: stages (paper protocol: equal stage-2 steps)"]
    row = table.set_index("claim").loc["IB-GL first beats contrastive learning alone"]
    assert row["ours"] == pytest.approx(15.0, abs=1.0)  # paper protocol: CL at 2 steps (0.40) vs LBR (0.55)
    paper = {r["model"]: r["medical"] for r in paper_numbers()["table3_stages"]["rows"]}
    assert row["paper"] == pytest.approx(paper["LLM+IB-GL+CL"] - paper["LLM+CL"])
    assert not row["paper_in_ci"] and row["verdict"] == "reproduced"


def test_generation_keeps_is_judged_with_a_margin_and_convergence_by_hand():
    from lbr_utils.studies.ch05a_lbr_stages import convergence, generation_claims

    record = _stages_record(0.1)
    generation = pd.DataFrame(record["metrics"]["generation"])
    rows = generation_claims(generation).set_index("claim")
    keeps = rows.loc["IB-GL keeps GL's generation (ROUGE-L, at most 2 points worse)"]
    assert keeps["ours"] == pytest.approx(-1.0) and keeps["verdict"] == "reproduced"  # -1 is inside the margin
    training = pd.DataFrame(record["metrics"]["training"])
    conv = convergence(training, snapshot_steps=2)
    # the snapshot at 2: the line through steps 1-2 rises 0.1 points a step, 0.05 over half a step;
    # the 6-step run: flat from step 4 on
    assert conv["last-quarter gain"].round(6).tolist() == [0.05, 0.0] * 3 and conv["flattened"].all()
    # a curve that cannot show its last quarter is no evidence of convergence
    short = training.assign(dev_curve=[[{"step": 6, "dev NDCG@10": 0.5}]] * len(training))
    assert not convergence(short, snapshot_steps=2)["flattened"].any()


def test_a_decided_verdict_on_an_arm_still_climbing_is_listed():
    """The gate's middle ground: LLM+CL at equal steps gains 0.15, 1.5 and 3 dev points over its last
    quarter on the three seeds (mean above 1, CI reaching below it), so its claims are judged, and
    the decided ones are listed as resting on an arm that has not flattened."""
    from lbr_utils.studies.ch05a_lbr_stages import EQUAL, HEADLINE, judged, rest_on_climbing_arms

    record = _stages_record(0.10)
    assert rest_on_climbing_arms(record) == []  # the record's curves flatten
    for row, gain in zip(record["metrics"]["training"], (0.15, 1.5, 3.0)):
        # dev 0.5 up to step 4, then a line to step 6: the quarter from step 4.5 holds 3/4 of the rise
        row["dev_curve"] = [{"step": 2, "dev NDCG@10": 0.5}, {"step": 4, "dev NDCG@10": 0.5},
                            {"step": 6, "dev NDCG@10": 0.5 + gain / 75}]
    listed = rest_on_climbing_arms(record)
    head = f"LBR beats LLM+CL{EQUAL} (the best CL-only LLM on dev)"
    assert head in [r["claim"] for r in listed] and all(r["verdict"] in ("reproduced", "contradicted") for r in listed)
    assert all({"LLM+CL", f"LLM+CL{EQUAL}"} & {r["a"], r["b"]} for r in listed)  # only claims on the climbing run
    assert judged(record)[HEADLINE].set_index("claim").loc[head, "verdict"] == "reproduced"  # judged, not withheld


def test_what_each_run_saw_by_hand():
    """Epochs = steps x batch / split size (GL for stage 1, CL for stage 2, both for the data-matched
    arm); a shared stage-1 checkpoint counts once; the loss change compares quarter means."""
    from lbr_utils.studies.ch05a_lbr_stages import DATA_MATCHED, exposure

    loss = [{"step": step, "loss": 3.0 - 0.1 * step} for step in range(1, 9)]  # quarters 5-6 vs 7-8: -0.2
    training = pd.DataFrame([
        {"model": "LLM+IB-GL", "domain": "d", "seed": 0, "stage": 1, "steps": 8, "seconds": 5.0, "final_loss": 2.2, "loss_curve": loss},
        {"model": "LLM+IB-GL+CL", "domain": "d", "seed": 0, "stage": 1, "steps": 8, "seconds": 5.0, "final_loss": 2.2, "loss_curve": loss},
        {"model": "LLM+IB-GL+CL", "domain": "d", "seed": 0, "stage": 2, "steps": 8, "seconds": 3.0, "final_loss": 0.1, "loss_curve": loss},
        {"model": DATA_MATCHED, "domain": "d", "seed": 0, "stage": 2, "steps": 8, "seconds": 3.0, "final_loss": 0.3, "loss_curve": loss},
        {"model": "MiniLM+CL", "domain": "d", "seed": 0, "stage": 2, "steps": 8, "seconds": 3.0, "final_loss": 0.3, "loss_curve": loss}])
    splits = pd.DataFrame([{"domain": "d", "gl": 16, "cl": 32}])
    seen = exposure(training, splits, {"stage1": {"batch_size": 4}, "stage2": {"batch_size": 8}}).reset_index()
    assert seen[["stage", "model", "trained on"]].values.tolist() == [[1, "LLM+IB-GL", "gl"], [2, "LLM+IB-GL+CL", "cl"],
                                                                      [2, DATA_MATCHED, "gl + cl"]]
    assert seen.epochs.tolist() == [2.0, 2.0, pytest.approx(64 / 48, abs=0.01)]
    assert seen["loss change, 3rd to 4th quarter"].tolist() == pytest.approx([-0.2] * 3)
    assert np.isnan(seen["chance (ln batch)"][0]) and seen["chance (ln batch)"][1] == pytest.approx(np.log(8), abs=0.01)


def test_what_this_shows_is_written_from_the_judged_claims():
    from lbr_utils.studies.ch05a_lbr_stages import summary

    text = summary(_stages_record(0.0))
    assert "**inconclusive**: LBR beats LLM+CL @ equal steps (the best CL-only LLM on dev) (medical)" in text
    assert "seeds at this effect size" in text or "+0.0" in text


def _synthetic_record(added: float, seeds=(0, 1, 2), queries: int = 60) -> dict:
    """A chapter-4 results record: per-query NDCG@10 of every arm on every seed, flat dev curves;
    human + synthetic scores ``added`` above human, synthetic 1 point below it."""
    rng = np.random.default_rng(0)
    base = {"before training": 0.30, "human": 0.50, "synthetic": 0.49, "synthetic (unfiltered)": 0.45,
            "synthetic (no consistency filter)": 0.48, "mix (equal pairs)": 0.50, "human + synthetic": 0.50 + added, "human, twice the epochs": 0.51}
    retrieval, training = [], []
    for seed in seeds:
        for model, score in base.items():
            per_query = np.clip(score + rng.normal(0, 0.01, queries), 0, 1).tolist()
            retrieval.append({"model": model, "seed": seed, "metric": "NDCG@10", "per_query": per_query,
                              "score": float(np.mean(per_query))})
            flat = [{"step": 6, "dev NDCG@10": score}, {"step": 8, "dev NDCG@10": score}]
            training.append({"model": model, "seed": seed, "steps": 8, "dev_curve": flat})
    return {"metrics": {"retrieval": retrieval, "training": training}}


def test_survey_claims_follow_the_chapter_results():
    """Chapter 4's claims are judged per query from its file: synthetic pairs added to human pairs
    that score 3 points higher are 'reproduced', 3 lower 'contradicted'; synthetic alone at 1 point
    below human is inside the 2-point margin of "rivals"; the consistency filter compares the kept
queries with those that passed every other check; a chapter without results adds no claim."""
    up = survey_claims({"ch04_synthetic": _synthetic_record(0.03)}).set_index("claim")
    ours = lambda table, claim: float(table.loc[claim, "ours [95% CI]"].split()[0])
    added = next(c for c in up.index if c.startswith("LLM-synthesised pairs added to human pairs"))
    filtered = next(c for c in up.index if c.startswith("the consistency filter"))  # kept 0.49 vs not 0.48
    assert up.loc[filtered, "verdict"] == "reproduced" and ours(up, filtered) == pytest.approx(1.0, abs=0.5)
    assert up.loc[added, "verdict"] == "reproduced" and ours(up, added) == pytest.approx(3.0, abs=0.5)
    rival = next(c for c in up.index if c.startswith("LLM-synthesised pairs rival human pairs"))
    assert up.loc[rival, "verdict"] == "reproduced" and ours(up, rival) == pytest.approx(-1.0, abs=0.5)
    down = survey_claims({"ch04_synthetic": _synthetic_record(-0.03)}).set_index("claim")
    assert down.loc[added, "verdict"] == "contradicted" and len(up) == 6 and survey_claims({}).empty


def test_chapter_4s_answer_follows_its_verdicts():
    """The chapter's question is answered from the claims' verdicts, with their numbers: synthetic pairs
    1 point below human are inside the margin (as good), adding them 3 points up helps; an arm below
    MiniLM as is says so; an open claim too small for any feasible number of seeds is not sent to more
    seeds under "What would decide it"."""
    from lbr_utils.stats import to_decide
    from lbr_utils.studies.ch04_synthetic import answer_lines
    from lbr_utils.studies.ch04_synthetic import survey_claims as chapter_claims

    tables = {k: pd.DataFrame(v) for k, v in _synthetic_record(0.03)["metrics"].items()}
    tables["retrieval"] = pd.concat([tables["retrieval"], pd.DataFrame(
        [{"model": "all-MiniLM-L6-v2", "seed": s, "per_query": [0.9] * 60} for s in (0, 1, 2)])])
    tables["sizes"] = pd.DataFrame([{"seed": s, "dataset": "human", "pairs": 100 + s} for s in (0, 1, 2)])
    judged = chapter_claims(tables)
    answer, decide = answer_lines(judged, tables)
    assert "Its kept queries train as well as human questions" in answer and "(synthetic minus human: -0.9" in answer
    assert "Added to the human pairs, they help (human + synthetic minus human: +3.1" in answer
    assert "stays below all-MiniLM-L6-v2 as is (90.0)" in answer
    mix = judged.set_index("a").loc["mix (equal pairs)"]
    # the mix's difference is too small for any feasible number of seeds: it is not sent to more seeds
    assert mix.verdict == "inconclusive" and "no feasible number of seeds" in to_decide(mix)
    assert "More seeds" not in decide and "The 1 open claim differs by less than any feasible number" in decide
    assert "the arms have 101 pairs each" in decide


def test_compression_claims_by_hand():
    """Chapter 6: compressed vs truncated per test example at r = 8 on every seed, and the share of
    time saved per passage length over repeats: a compressor that answers 30% more questions is
    'reproduced', one whose dev curve still climbs is not judged; cheaper steps but a dearer prefill
    make 'faster per token' reproduced and 'faster end to end' contradicted."""
    from lbr_utils.studies.ch06_compression import break_even, steady_repeats, survey_claims

    rng = np.random.default_rng(0)
    quality, training = [], []
    for seed in (0, 1, 2):
        for task, gain, ratios in [("qa", 0.3, (2.0, 4.0, 8.0, 16.0)), ("reconstruct", 0.0, (8.0,))]:
            for ratio in ratios:
                truncated = rng.uniform(0, 0.5, 40)
                for mode, scores in [("compressed", truncated + gain + rng.normal(0, 0.01, 40)), ("truncated", truncated)]:
                    quality.append({"task": task, "mode": mode, "ratio": ratio, "seed": seed,  # ROUGE-L is x100
                                    "per_example": scores.tolist(), "ROUGE-L per example": (100 * scores).tolist()})
        curve = [{"step": s, "qa, compressed": 0.5, "reconstruct, compressed": 0.1 * s, "qa, truncated": 0.2,
                  "reconstruct, truncated": 0.3, "qa, compressed, loss": 1.0, "qa, truncated, loss": 1.0}
                 for s in (3, 6, 9, 12)]
        training.append({"seed": seed, "steps": 12, "dev_curve": curve})
    decoding = [{"passage_tokens": n, "reading": reading, "repeat": r, "answer_tokens": 64, "prefill_s": prefill,
                 "ms_per_token": ms, "end_to_end_s": prefill + 0.064 * ms, "busy_cores": 0.1}
                for n in (256, 1024) for r in range(5)
                for reading, prefill, ms in [("full", 1.0, 10.0 + 0.1 * r), ("compressed (r=8)", 2.0, 8.0 + 0.1 * r)]]
    for seed in (0, 1, 2):  # closed book: the question alone answers nothing
        quality.append({"task": "qa", "mode": "closed book", "ratio": None, "seed": seed, "per_example": [0.0] * 40})
    tables = {"quality": pd.DataFrame(quality), "training": pd.DataFrame(training), "decoding": pd.DataFrame(decoding)}
    table = survey_claims(tables).set_index("claim")
    row = lambda start: table.loc[next(c for c in table.index if c.startswith(start))]
    qa = row("at the same token budget (r = 8), a compressed context answers more questions than truncation")
    assert qa["verdict"] == "reproduced" and qa["ours"] == pytest.approx(30.0, abs=1.0)
    assert row("at the same token budget (r = 8), a compressed context reconstructs")["verdict"].startswith("not judged")
    assert row("at the same token budget (r = 8), a compressed context answers more questions than the question "
               "alone")["verdict"] == "reproduced"
    for n in (256, 1024):  # one claim per passage length, the repeats its samples
        per_token = row(f"decoding from the compressed context (r = 8) is faster per generated token, after {n} ")
        assert per_token["verdict"] == "reproduced" and per_token["ours"] == pytest.approx(100 * 2 / 10.2, abs=1.0)
        assert row(f"end to end (prefill + a 64-token answer), the compressed context is faster, after {n} ")[
            "verdict"] == "contradicted"
    even = break_even(tables["decoding"]).set_index("passage tokens")
    assert even.loc[256, "compressed faster from (answer tokens)"] == 500  # 1000 ms extra prefill / 2 ms a token
    rouge = row("at the same token budget (r = 8), a compressed context reconstructs the passage better than "
                "truncation (ROUGE-L)")
    assert abs(rouge["ours"]) < 2  # points of ROUGE-L, not scaled twice
    # timed while other work kept 1.5 cores busy: no speed claim is judged; a truncated reading still
    # climbing on dev withholds the claims that compare it
    busy = dict(tables, decoding=tables["decoding"].assign(busy_cores=1.5))
    speed = survey_claims(busy).set_index("claim").filter(like="faster", axis=0).verdict
    assert len(speed) == 4 and (speed == "not judged: 0 steady repeats of the timing (at least 3 needed)").all()
    # one stalled reading (3x its median): its repeat leaves both claims at that length, the rest stay judged
    stalled = tables["decoding"].copy()
    stalled.loc[(stalled.passage_tokens == 1024) & (stalled.repeat == 3) & (stalled.reading == "full"), "ms_per_token"] *= 3
    steady, out = steady_repeats(stalled)
    assert out.to_dict(orient="records") == [{"passage_tokens": 1024, "repeat": 3, "why": "a stall"}]
    assert len(steady) == len(stalled) - 2
    assert survey_claims(dict(tables, decoding=stalled)).set_index("claim").loc[
        per_token.name, "verdict"] == "reproduced"
    # a full passage below truncation breaks the ceiling: that task's claims are not judged
    broken = pd.DataFrame(quality + [{"task": "qa", "mode": "full", "ratio": None, "seed": s, "per_example": [0.0] * 40}
                                     for s in (0, 1, 2)])
    assert survey_claims(dict(tables, quality=broken)).set_index("claim").loc[qa.name, "verdict"].startswith(
        "not judged: the full passage scores below truncation")
    # both readings at 0 on every example (a compressor that answers nothing, and a truncation that cannot)
    silent = pd.DataFrame([dict(q, per_example=[0.0] * 40) if q["task"] == "qa" and q["ratio"] == 2.0 else q
                           for q in quality])
    assert survey_claims(dict(tables, quality=silent)).set_index("claim").filter(like="(r = 2)", axis=0).verdict.tolist() == [
        "not judged: neither reading scores on any example"]
    climbing = tables["training"].assign(dev_curve=[[dict(p, **{"qa, truncated": 0.1 * p["step"]}) for p in c]
                                                    for c in tables["training"].dev_curve])
    late = survey_claims(dict(tables, training=climbing)).set_index("claim")
    assert late.loc[qa.name, "verdict"] == "not judged: truncated (qa) not converged"
    # exact match flat, but the compressed reading's answer loss still falling (0.2 nats a quarter): not judged
    learning = tables["training"].assign(dev_curve=[[dict(p, **{"qa, compressed, loss": 2.0 - 0.2 * p["step"] / 3})
                                                     for p in c] for c in tables["training"].dev_curve])
    judged = survey_claims(dict(tables, training=learning)).set_index("claim")
    assert judged.loc[qa.name, "verdict"] == "not judged: compressed (qa) not converged"
    assert not judged.filter(like="reconstructs", axis=0).verdict.str.contains("compressed \\(qa\\)").any()
    assert len(table.filter(like="answers more questions than truncation", axis=0)) == 4  # every ratio
    assert len(table.filter(like="reconstructs the passage", axis=0)) == 2  # token accuracy and ROUGE-L
    # at this chapter's answer length (5 tokens) the dearer prefill is not paid back: 1.051 s vs 2.041 s
    assert table.filter(like="this chapter's answers", axis=0).empty
    short = survey_claims(tables, answer_tokens=5).set_index("claim").filter(like="this chapter's answers", axis=0)
    assert len(short) == 2 and (short.verdict == "contradicted").all()
    assert short.ours.iloc[0] == pytest.approx(100 * (1.0 + 0.005 * 10.2 - 2.0 - 0.005 * 8.2) / (1.0 + 0.005 * 10.2), abs=2)


def test_the_dev_losses_say_more_or_less_only_when_every_seed_agrees():
    """Chapter 6's "Why": per task, compressed against truncated at the last dev point. Lower on every
    seed reads "more", higher on every seed "less"; a mean gap that one seed reverses is said as a
    disagreement, not as a direction (the gap's mean alone would say "more" here)."""
    from lbr_utils.studies.ch06_compression import loss_lines

    def run(seed: int, qa: tuple[float, float], rec: tuple[float, float]) -> dict:
        first = {"step": 10, "qa, compressed, loss": 9.0, "qa, truncated, loss": 9.0,
                 "reconstruct, compressed, loss": 9.0, "reconstruct, truncated, loss": 9.0}
        last = {"step": 20, "qa, compressed, loss": qa[0], "qa, truncated, loss": qa[1],
                "reconstruct, compressed, loss": rec[0], "reconstruct, truncated, loss": rec[1]}
        return {"seed": seed, "dev_curve": [first, last]}

    training = pd.DataFrame([run(0, (1.40, 1.50), (1.5, 1.2)), run(1, (1.52, 1.50), (1.4, 1.3))])
    qa, rec = loss_lines(training)
    assert qa.startswith("the answers' loss is 1.460 compressed against 1.500 truncated")
    assert qa.endswith("the seeds disagree on which tells the model more")
    assert rec.startswith("the reconstruction's is 1.450 compressed against 1.250 truncated")
    assert rec.endswith("the k bottleneck states tell the model less than the first k plain tokens, on every seed")
    agree = pd.DataFrame([run(0, (1.40, 1.50), (1.0, 1.2)), run(1, (1.45, 1.50), (1.1, 1.3))])
    assert all(line.endswith("more than the first k plain tokens, on every seed") for line in loss_lines(agree))
    assert loss_lines(pd.DataFrame([{"seed": 0, "dev_curve": []}])) == []


def test_the_compression_gate_shows_each_seeds_answer_loss_fall():
    """What withholds chapter 6's QA claims is on the page: a compressed answer loss falling 0.2 nats a
    quarter on every seed reads "yes: not judged" with each seed's change, a flat truncated one "no";
    the reconstruction arms carry only the exact-match-style gain."""
    from lbr_utils.studies.ch06_compression import convergence

    def curve(seed: int) -> list[dict]:
        return [{"step": k, "qa, compressed": 0.1, "qa, truncated": 0.1, "reconstruct, compressed": 0.2,
                 "reconstruct, truncated": 0.3, "qa, compressed, loss": 2.0 - 0.2 * k / 3 - 0.01 * seed,
                 "qa, truncated, loss": 1.0} for k in (3, 6, 9, 12)]

    table = convergence(pd.DataFrame([{"seed": s, "steps": 12, "dev_curve": curve(s)} for s in (1, 0)]))
    falls = "dev answer loss, last-quarter change per seed (nats)"
    assert table.loc["compressed (qa)", falls] == "-0.200, -0.200"
    assert table.loc["compressed (qa)", "answer loss still falling (mean < -0.05)"] == "yes: not judged"
    assert table.loc["truncated (qa)", "answer loss still falling (mean < -0.05)"] == "no"
    assert table.loc["compressed (reconstruct)", falls] == "–"
    assert table.loc["truncated (reconstruct)", "far from convergence"] == "no"


def test_what_the_qa_readings_answered_is_read_against_the_rebuilt_questions():
    """The full reading gives every asked code, the compressed one the same answer to every question,
    the truncated one the passage's first word; the closed book nothing. A results table whose answers
    do not match the rebuilt questions in number is refused."""
    from transformers import AutoTokenizer

    from lbr_utils.models import resolve_model_path
    from lbr_utils.studies._compression_cells import compression_config, datasets
    from lbr_utils.studies.ch06_compression import qa_answers

    profile = get_profile("smoke")
    tok = AutoTokenizer.from_pretrained(resolve_model_path(profile.model))
    examples = datasets(profile, 0, tok, compression_config(profile, 0).max_input)[2]["qa"]
    answers = {("compressed", 8.0): [" D56.8"] * len(examples), ("truncated", 8.0): [e.passage.split()[0] for e in examples],
               ("full", None): [e.answer for e in examples], ("closed book", None): [""] * len(examples)}
    quality = pd.DataFrame([{"task": "qa", "mode": m, "ratio": r, "seed": 0, "hypotheses": h} for (m, r), h in answers.items()])
    table = qa_answers("smoke", quality, 0)
    assert table.loc["full", "the asked code"] == 1.0
    assert table.loc["compressed (r = 8)", "its share"] == 1.0 and table.loc["compressed (r = 8)", "most frequent answer"] == "d56.8"
    assert table.loc["truncated (r = 8)", "another string of the passage"] == 1.0
    assert table.loc["closed book", "most frequent answer"] == "(nothing)" and table.loc["closed book", "neither"] == 1.0
    with pytest.raises(ValueError, match="rerun the chapter"):
        qa_answers("smoke", quality.assign(hypotheses=[h[:-1] for h in quality.hypotheses]), 0)


def test_the_template_floor_scores_each_reconstruction_against_another_passage():
    """A reading that writes the same card for every passage scores as much against another passage
    as against its own (not above the floor); one that writes each passage back is far above it. A
    table whose stored scores the rebuilt references do not give is refused."""
    from transformers import AutoTokenizer

    from lbr_utils.compress import token_accuracy
    from lbr_utils.models import resolve_model_path
    from lbr_utils.pooling import token_ids
    from lbr_utils.studies._compression_cells import compression_config, datasets
    from lbr_utils.studies.ch06_compression import template_floor

    profile = get_profile("smoke")
    cfg = compression_config(profile, 0)
    tok = AutoTokenizer.from_pretrained(resolve_model_path(profile.model))
    refs = [tok.decode(token_ids(tok, e.passage)[:cfg.max_target])
            for e in datasets(profile, 0, tok, cfg.max_input)[2]["reconstruct"]]
    assert len(set(refs)) > 2
    readings = {("compressed", 8.0): [refs[0]] * len(refs), ("full", None): refs}
    quality = pd.DataFrame([{"task": "reconstruct", "mode": m, "ratio": r, "seed": 0, "hypotheses": h,
                             "per_example": [token_accuracy(tok, x, y) for x, y in zip(h, refs)],
                             "ROUGE-L per example": [50.0] * len(h)} for (m, r), h in readings.items()])
    floor = template_floor("smoke", quality)
    assert floor.loc["full", "token acc., own"] == pytest.approx(100.0)
    assert floor.loc["full", "above the floor"]
    template = floor.loc["compressed (r = 8)"]
    assert not template["above the floor"]
    # the other passage is the next one, cyclically: every reference is "other" once, so one text written
    # for every passage gains exactly nothing over the floor
    assert template["ours"] == pytest.approx(0.0, abs=1e-9) and template["token acc., own"] > 0
    with pytest.raises(ValueError, match="do not score the stored outputs"):
        template_floor("smoke", quality.assign(per_example=[[0.0] * len(refs)] * 2))


def test_noisy_corpus_embedder_perturbs_stored_documents_only():
    """Retrieval searches the very vectors the attacker reads: a stored document's noised vector."""
    from lbr_utils.studies._inversion_cells import noisy_corpus_embedder, stored_vectors

    embed = lambda texts: np.array([[1.0, 0.0] if t.startswith("d") else [0.0, 1.0] for t in texts])
    stored = stored_vectors(embed, ["d1", "d2"], scale=0.5, seed=0)
    out = noisy_corpus_embedder(embed, stored)(["d1", "q", "d2"])
    assert np.allclose(out[1], [0.0, 1.0])  # a query is only normalised
    assert not np.allclose(out[0], [1.0, 0.0]) and not np.allclose(out[0], out[2])
    assert np.array_equal(out[0], stored["d1"]) and np.array_equal(out[2], stored["d2"])


def test_recovered_words_and_the_leak_by_hand():
    from lbr_utils.studies.ch07_inversion import leak, recovered

    texts = ["Asthma attack (ICD-10-CM J45; a lung disease)", "Gout (ICD-10-CM M10; a joint disease)"]
    got = recovered([{"asthma", "lung"}, {"knee"}], texts)
    # text 1's words: asthma attack icd 10 cm j45 a lung disease (9); both guesses are in it
    assert got["word F1"][0] == pytest.approx(2 * 1.0 * (2 / 9) / (1.0 + 2 / 9)) and got["word F1"][1] == 0.0
    assert got["condition words recovered"] == [0.5, 0.0]
    assert got["word precision"] == [1.0, 0.0] and got["word recall"] == pytest.approx([2 / 9, 0.0])
    assert recovered([{"j45", "lung"}, {"m10.1"}], texts)["ICD code recovered"] == [1.0, 0.0]  # the code exactly
    table = pd.DataFrame([{"word F1": [0.5, 0.2], "word F1, floor": [0.3, 0.3]}])
    assert leak(table).per_query.iloc[0] == pytest.approx([0.2, -0.1])


def test_usable_noise_is_the_largest_that_costs_at_most_one_point_on_dev_with_all_below_it():
    """Picked on the dev queries with half the claim's two-point budget (the evaluation queries, which
    judge it, would pick otherwise here), and never past a smaller scale that failed ("c")."""
    from lbr_utils.studies.ch07_inversion import usable_noise

    retrieval = pd.DataFrame({"embedder": ["a"] * 4 + ["b"] * 2 + ["c"] * 3,
                              "noise": [0.0, 0.01, 0.05, 0.1, 0.0, 0.01, 0.0, 0.01, 0.05],
                              "dev NDCG@10": [0.50, 0.495, 0.481, 0.40, 0.6, 0.5, 0.5, 0.48, 0.5],
                              "NDCG@10": [0.50, 0.49, 0.40, 0.30, 0.6, 0.59, 0.5, 0.5, 0.5]})
    assert usable_noise(retrieval) == {"a": 0.01, "b": 0.0, "c": 0.0}
    assert usable_noise(retrieval, column="NDCG@10") == {"a": 0.01, "b": 0.01, "c": 0.05}


def test_inversion_claims_judge_each_attack_and_the_noise_by_hand():
    """A probe that leaks (own vector 0.3 above the floor) is 'reproduced', a decoder that does not is
    not; noise that keeps retrieval and cuts the probe's leak to a tenth halves it (every attack is
    judged); where every noise costs retrieval too much, the defence is not judged."""
    from lbr_utils.studies.ch07_inversion import survey_claims

    rng = np.random.default_rng(0)
    inversion, retrieval = [], []
    for seed in (0, 1, 2):
        for noise, kept in [(0.0, 1.0), (0.05, 0.1)]:
            for attack, gain in [("bag-of-words probe", 0.3), ("adaptive probe", 0.3), ("decoder", 0.0)]:
                floor = rng.uniform(0.2, 0.3, 50)
                inversion.append({"embedder": "e", "attack": attack, "noise": noise, "seed": seed,
                                  "word F1": (floor + kept * gain + rng.normal(0, 0.01, 50)).tolist(),
                                  "word F1, floor": floor.tolist()})
            per_query = (0.5 - noise / 10 + rng.normal(0, 0.005, 50)).tolist()  # noise 0.05 costs half a point
            retrieval.append({"embedder": "e", "noise": noise, "seed": seed, "NDCG@10": float(np.mean(per_query)),
                              "per_query": per_query, "dev NDCG@10": float(np.mean(per_query))})
    flat = [{"step": step, "dev word F1": 0.3} for step in (25, 50, 75, 100)]
    training = pd.DataFrame([{"embedder": "e", "seed": s, "steps": 100, "dev_curve": flat} for s in (0, 1, 2)])
    tables = {"inversion": pd.DataFrame(inversion), "retrieval": pd.DataFrame(retrieval), "training": training}
    table = survey_claims(tables).set_index("claim")
    probe = table.loc["stored embeddings leak their text: the bag-of-words probe recovers more words than the template"]
    assert probe["verdict"] == "reproduced" and probe["ours"] == pytest.approx(30.0, abs=1.0)
    assert table.loc["stored embeddings leak their text: the decoder recovers more words than the template",
                     "verdict"] != "reproduced"
    halves = table[table.index.str.startswith("noise at 0.05")].verdict
    assert halves["noise at 0.05 (at most 2 NDCG@10 points lost) halves the adaptive probe's leak"] == "reproduced"
    # the probe trained on clean vectors meets noise it never saw: a straw man, shown but not judged
    assert halves["noise at 0.05 (at most 2 NDCG@10 points lost) halves the bag-of-words probe's leak"].startswith(
        "not judged: an attacker who ignores the noise")
    # the decoder shows no clean leak: there is nothing for noise to halve
    assert halves["noise at 0.05 (at most 2 NDCG@10 points lost) halves the decoder's leak"] == \
        "not judged: no clean leak to halve"
    budget = table.loc["noise at 0.05 costs retrieval at most 2 NDCG@10 points"]
    assert budget["verdict"] == "reproduced" and budget["ours"] == pytest.approx(-0.5, abs=0.3)
    costly = dict(tables, retrieval=tables["retrieval"].assign(**{"dev NDCG@10": lambda t: 0.5 - 2 * t.noise}))
    assert (survey_claims(costly).set_index("claim").filter(like="noise at 0 ", axis=0).verdict
            == "not judged: no noise within the retrieval budget").all()
    # a decoder still climbing on dev (0.1 -> 0.4 word F1) is not judged; the probes still are
    climbing = [{"step": step, "dev word F1": step / 250} for step in (25, 50, 75, 100)]
    late = survey_claims(dict(tables, training=training.assign(dev_curve=[climbing] * 3))).set_index("claim")
    assert (late.filter(like="decoder", axis=0).verdict == "not judged: decoder not converged").all()
    assert late.loc[probe.name, "verdict"] == "reproduced"
    # one that gained about 2 points over its last quarter, on noisy dev texts: judged, and marked
    rising = [{"step": step, "dev word F1": 0.3 + 0.02 * (step == 100),
               "dev word F1 per text": list(0.3 + 0.02 * (step == 100) + 0.3 * rng.standard_normal(40))}
              for step in (25, 50, 75, 100)]
    marked = survey_claims(dict(tables, training=training.assign(dev_curve=[rising] * 3))).set_index("claim")
    decoder = marked.loc["stored embeddings leak their text: the decoder recovers more words than the template"]
    assert not decoder["verdict"].startswith("not judged") and "the decoder had not flattened" in decoder["caveat"]
    # a probe that stopped at its epoch cap (clean, or adaptive under noise) measures a lower bound: its
    # verdicts stand, each with a caveat that says which way the bound leans
    probes = pd.DataFrame([{"embedder": "e", "noise": n, "seed": 0, "epochs kept": kept, "epochs at most": 500}
                           for n, kept in [(0.0, 500), (0.05, 499)]])
    capped = survey_claims(dict(tables, probes=probes)).set_index("claim")
    halving = capped.loc["noise at 0.05 (at most 2 NDCG@10 points lost) halves the adaptive probe's leak"]
    assert halving["verdict"] == "reproduced" and "favours the defence" in halving["caveat"]
    assert capped.loc[probe.name, "verdict"] == "reproduced" and "lower bound" in capped.loc[probe.name, "caveat"]
    # noise whose cost the evaluation queries do not show within the budget: no halving is judged
    dear = dict(tables, retrieval=tables["retrieval"].assign(
        per_query=[list(np.add(q, -0.03 * (n > 0) + 0.02 * rng.standard_normal(50)))
                   for q, n in zip(tables["retrieval"].per_query, tables["retrieval"].noise)]))
    unaffordable = survey_claims(dear).set_index("claim")
    assert unaffordable.loc["noise at 0.05 costs retrieval at most 2 NDCG@10 points", "verdict"] != "reproduced"
    assert unaffordable.loc["noise at 0.05 (at most 2 NDCG@10 points lost) halves the adaptive probe's leak",
                            "verdict"].startswith("not judged: the noise level is not shown to cost at most the budget")


def test_what_halving_costs_and_where_the_nearest_neighbour_leaks_from_by_hand():
    """Halving: the adaptive probe's leak 20 -> 12 -> 8 (halved at 0.1, not at 0.05) and the neighbour's
    10 -> 4 (halved at 0.05): every attack is halved first at 0.1, where NDCG@10 is 40; the clean-vector
    probe (which ignores the noise) does not count. Siblings: a hit of the secret's own ICD category
    (T85.635 for T85.625) against one of another (H40.03 for H17.81)."""
    from lbr_utils.studies.ch07_inversion import ADAPTIVE, PROBE, halving_cost, sibling_hits

    curve = pd.DataFrame([{"embedder": "e", "attack": a, "noise": n, "leak": leak, "NDCG@10": ndcg}
                          for n, ndcg, leaks in [(0.0, 80.0, (20, 10, 20)), (0.05, 70.0, (12, 4, 20)), (0.1, 40.0, (8, 3, 20))]
                          for a, leak in zip((ADAPTIVE, "nearest neighbour", PROBE), leaks)])
    assert halving_cost(curve) == {"e": "halving every attack's leak takes noise 0.1, where retrieval NDCG@10 falls "
                                        "from 80.0 to 40.0"}
    assert halving_cost(curve[curve.noise < 0.1])["e"].startswith("no noise tried halves every attack: at 0.05 "
                                                                  "(NDCG@10 80.0 -> 70.0) the adaptive probe still leaks 12.0")
    tables = {"inversion": pd.DataFrame([{"embedder": "e", "attack": "nearest neighbour", "noise": 0.0, "seed": 0,
                                          "guesses": ["10 cm device t85.635", "10 angle glaucoma h40.03"],
                                          "word F1": [0.8, 0.4]}]),
              "secrets": pd.DataFrame([{"embedder": "e", "seed": 0, "text": "Displacement of a graft (ICD-10-CM T85.625; x)"},
                                       {"embedder": "e", "seed": 0, "text": "Minor opacity of cornea (ICD-10-CM H17.81; y)"}])}
    row = sibling_hits(tables).loc["e"]
    assert row["sibling share"] == 0.5 and row["word F1, sibling hits"] == 80.0 and row["word F1, other hits"] == 40.0


def _ablations_record(seeds=(0, 1, 2), queries: int = 40) -> dict:
    """A chapter-5b results record with known per-query scores (no noise: differences are exact)."""
    rows = []

    def add(part, model, score, s1=0, s2=0):
        for seed in seeds:
            rows.append({"part": part, "model": model, "domain": "medical", "seed": seed, "metric": "NDCG@10",
                         "score": score, "per_query": [score] * queries, "stage1_steps": s1, "stage2_steps": s2,
                         "steps": s1 + s2})

    for model, score in [("GL+CL (causal)", 0.50), ("GL+CL (bidirectional)", 0.49), ("IB-GL+CL (causal)", 0.60),
                         ("IB-GL+CL (bidirectional)", 0.40)]:
        add("attention", model, score, 4, 2)
    for r, score in [(4, 0.20), (8, 0.30), (16, 0.25), (32, 0.10)]:
        add("ratio", f"r={r}", score, 4)
    for model, score in [("Standard SFT", 0.1), ("IB-GL (SFT)", 0.3), ("Standard PT", 0.1), ("IB-GL (PT)", 0.05)]:
        add("style", model, score, 4)
    add("allocation", "CL only", 0.40, 0, 2)
    add("allocation", "CL only", 0.45, 0, 6)
    for model, s1, score in [("GL", 4, 0.44), ("IB-GL", 4, 0.50), ("GL", 5, 0.42), ("IB-GL", 5, 0.41)]:
        add("allocation", model, score, s1, 6 - s1)
    return {"metrics": {"retrieval": rows}}


def test_ablation_claims_by_hand():
    from lbr_utils.studies.ch05b_lbr_ablations import TABLE4, judged

    families = judged(_ablations_record())
    attention = families[TABLE4].set_index("claim")
    drops = attention.loc["bidirectional attention costs IB-GL more than GL (drop after IB-GL minus drop after GL)"]
    assert drops["ours"] == pytest.approx(100 * ((0.60 - 0.40) - (0.50 - 0.49)))  # 19 points
    assert drops["verdict"] == "reproduced" and drops["paper"] is None  # the paper's Table 4 looks mis-extracted
    ratio = families["Table 5: compression ratio (stage 1 only)"].set_index("claim")
    assert ratio.loc["r=8 beats r=4 (our sweep's end)", "ours"] == pytest.approx(10.0)
    assert ratio.loc["r=8 beats r=32 (our sweep's end)", "verdict"] == "reproduced"
    style = families["Table 6: data style of stage 1"].set_index("claim")
    assert style.loc["IB-GL (PT) beats Standard PT", "verdict"] == "contradicted"
    allocation = families["Figure 3: one budget, split between the stages"]
    assert allocation.verdict.tolist() == ["reproduced", "contradicted", "reproduced", "contradicted"]
    assert allocation.ours.round(6).tolist() == [6.0, -1.0, 5.0, -4.0]  # IB-GL - GL at 4 and 5; IB-GL - CL only (6 steps)


def test_a_claim_about_a_run_that_had_not_flattened_is_not_judged():
    """The CL-only run still gains 4.5 dev points over its last quarter (and its paper-budget snapshot
    has no curve to show its own): every claim that compares with it (at either budget) says so
    instead of a verdict, and takes no part in the Holm family."""
    from lbr_utils.stats import verdict_counts
    from lbr_utils.studies.ch05a_lbr_stages import HEADLINE, PRACTICAL, judged

    record = _stages_record(0.10)
    for run in record["metrics"]["training"]:
        run["dev_curve"] = [{"step": s, "dev NDCG@10": 0.5 + 0.03 * s} for s in (2, 4, 6)]
    families = judged(record)
    equal = families[HEADLINE].set_index("claim")
    assert equal.loc["LBR beats LLM+CL @ equal steps (the best CL-only LLM on dev)", "verdict"] == \
        "not judged: LLM+CL @ equal steps not converged"
    assert np.isnan(equal.loc["LBR beats LLM+CL @ equal steps (the best CL-only LLM on dev)", "p_holm"])
    assert families[PRACTICAL].set_index("claim").loc["LBR beats BM25", "verdict"] == "reproduced"
    assert "not judged" in verdict_counts(families)


def test_the_pooled_token_display_marks_only_what_a_pooling_reads():
    """Last and PromptEOL read one token (weight 1), first the first text token, mean spreads its
    weight evenly over the text (never on the BOS), echo over the second copy only."""
    from lbr_utils.studies.ch02_pooling import pooled_weights

    _, tok = build_tiny()
    text = "fever and cough"
    for pooling in ("last", "prompteol"):
        weights = [w for _, w in pooled_weights(tok, text, pooling)]
        assert weights[-1] == pytest.approx(1.0) and sum(weights) == pytest.approx(1.0) and max(weights[:-1]) == 0
    from lbr_utils.pooling import bos_ids

    bos = len(bos_ids(tok))  # a BOS, where the tokenizer adds one, is never pooled
    first = [w for _, w in pooled_weights(tok, text, "first")]
    assert first.index(1.0) == bos and sum(first) == pytest.approx(1.0)
    mean = [w for _, w in pooled_weights(tok, text, "mean")]
    assert all(w == 0 for w in mean[:bos]) and len(set(round(w, 6) for w in mean[bos:])) == 1
    echo = [w for _, w in pooled_weights(tok, text, "echo")]
    n = sum(w > 0 for w in echo)
    assert n == len(mean) - bos and all(w == 0 for w in echo[:-n])  # the second copy, and only it
    weighted = [w for _, w in pooled_weights(tok, text, "weighted_mean")]
    assert weighted[bos:] == sorted(weighted[bos:]) and sum(weighted) == pytest.approx(1.0)  # later tokens weigh more


def test_pooling_survey_claims_are_judged_per_domain_on_per_query_differences():
    """Every claim is judged per domain, on either table (an instructed reading against a plain one
    reads both), and the layer claims name this model's depths."""
    from lbr_utils.studies.ch02_pooling import chapter_claims, survey_claims

    rng = np.random.default_rng(0)
    rows = {"main": [], "instruction": []}
    for a, b, *_ in chapter_claims(30):
        for model, shift in ((a, 0.1), (b, 0.0)):
            for seed in (0, 1, 2):
                for domain in ("medical", "code"):
                    rows["instruction" if "instruction" in model else "main"].append(
                        {"model": model, "task": domain, "metric": "NDCG@10", "seed": seed,
                         "per_query": (0.3 + shift + rng.normal(0, 0.01, 30)).tolist()})
    tables = {k: pd.DataFrame(v).drop_duplicates(subset=["model", "task", "seed"]) for k, v in rows.items()}
    judged = survey_claims(tables, 30)
    assert len(judged) == len(chapter_claims(30)) * 2 and set(judged.domain) == {"medical", "code"}
    assert {"mean (layer 7, final norm)", "mean (layer 15, final norm)"} <= set(judged.a)
    first = judged[judged.a == chapter_claims(30)[0][0]]
    assert (first.verdict == "reproduced").all() and first.ours.round(0).eq(10).all()
    helps = judged[(judged.b == "mean") & judged.a.str.contains("instruction")]  # across the two tables
    assert len(helps) == 2 and helps.ours.round(0).eq(10).all()


def test_a_layer_read_through_the_final_norm_is_the_cut_models_last_state():
    """first_layers(model, n) shares the weights and returns layer n's output through the final norm;
    the whole model's hidden_states[n] is the same output without it; all layers give the model back."""
    from lbr_utils.models import decoder
    from lbr_utils.studies.ch02_pooling import claimed_variants, first_layers, variants

    model, tok = build_tiny()
    batch = tok(["fever and cough", "a rash"], return_tensors="pt", padding=True)
    layers = model.config.num_hidden_layers
    with torch.no_grad():
        full = decoder(model)(**batch, output_hidden_states=True)
        cut = decoder(first_layers(model, 1))(**batch)
        whole = decoder(first_layers(model, layers))(**batch)
    assert torch.allclose(cut.last_hidden_state, decoder(model).norm(full.hidden_states[1]), atol=1e-5)
    assert not torch.allclose(cut.last_hidden_state, full.hidden_states[1], atol=1e-3)
    assert torch.allclose(whole.last_hidden_state, full.last_hidden_state, atol=1e-5)
    assert len(decoder(model).layers) == layers  # the original is left whole
    assert claimed_variants(30) <= set(variants(30)) and "mean (layer 15, final norm)" in variants(30)


def test_chapter6_passages_fit_what_the_model_reads():
    """Every passage chapter 6 trains, tunes or tests on fits the model's reading window, so no reading
    loses the fact a question asks about; no split grows past what the profile asks for."""
    from lbr_utils.pooling import token_ids
    from lbr_utils.studies._compression_cells import compression_config, datasets

    _, tok = build_tiny()
    profile = get_profile("smoke")
    window = 200  # the tiny tokenizer spends about 60 tokens on one medical fact
    train, dev, test = datasets(profile, 0, tok, window)
    everything = train + [e for split in (dev, test) for examples in split.values() for e in examples]
    assert everything and all(len(token_ids(tok, e.passage)) <= window for e in everything)
    assert any(e.task == "qa" for e in train) and test["qa"] and 0 < len(test["reconstruct"]) <= profile.n_eval
    # a reconstructed passage is shaped like a QA one (three cards), so phase 1 fills the bottleneck as QA will
    assert all(e.passage.count("(ICD-10-CM ") == 3 for e in train + test["reconstruct"])
    unlimited = datasets(profile, 0, tok, 10**6)[2]["qa"]
    assert any(len(token_ids(tok, e.passage)) > window for e in unlimited)  # the window does leave some out


def test_anisotropy_pairs_are_disjoint_and_paired_across_models():
    """Chapter 3's anisotropy CI runs over pairs that share no document (n // 2 of them), the same
    pairs for every model at one seed; their cosines are the hand values."""
    from lbr_utils.studies._contrastive_cells import pair_cosines

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(11, 4))
    cos = pair_cosines(vectors, seed=3)
    order = np.random.default_rng(3).permutation(11)
    u = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    by_hand = [float(u[a] @ u[b]) for a, b in zip(order[0:10:2], order[1::2])]
    assert len(cos) == 5 and np.allclose(cos, by_hand)
    assert np.allclose(pair_cosines(np.ones((6, 3)), seed=1), 1.0) and np.allclose(pair_cosines(np.eye(6), seed=1), 0.0)


def test_the_headline_rival_is_picked_on_dev_not_on_the_evaluation_queries():
    """On evaluation the bottleneck CL run at equal steps scores highest, but on dev the last-token run
    does: the headline compares LBR with the last-token run (no winner's curse from the test queries)."""
    from lbr_utils.studies.ch05a_lbr_stages import EQUAL, HEADLINE, judged

    record = _stages_record(0.10)
    better = [{"step": s, "dev NDCG@10": 0.9} for s in (1, 2, 4, 6)]
    record["metrics"]["training"] += [{"model": "LLM+CL (last token)", "domain": "medical", "seed": s, "stage": 2,
                                       "steps": 6, "seconds": 1.0, "dev_curve": better, "loss_curve": []}
                                      for s in (0, 1, 2)]
    head = judged(record)[HEADLINE].iloc[0]
    assert head["claim"] == f"LBR beats LLM+CL (last token){EQUAL} (the best CL-only LLM on dev)"


def test_a_claim_is_judged_only_where_the_paper_makes_it():
    """"GL first hurts" (medical in the paper) and "IB-GL alone beats CL alone" (Table 2, medical) get
    no code row; the other stage claims are judged in both domains."""
    from lbr_utils.studies.ch05a_lbr_stages import stage_claims, with_arms

    record = _stages_record(0.10)
    rows = pd.DataFrame(record["metrics"]["retrieval"])
    retrieval = with_arms(pd.concat([rows, rows.assign(domain="code")]), record["config"])
    table = stage_claims(retrieval)
    domains = table.groupby("claim").domain.apply(sorted)
    assert domains["standard GL first hurts contrastive learning"] == ["medical"]
    assert domains["IB-GL alone beats contrastive learning alone (Table 2)"] == ["medical"]
    assert domains["IB-GL first beats contrastive learning alone"] == ["code", "medical"]
    assert domains["IB-GL beats standard GL read by its mean"] == ["code", "medical"]


def test_table4_waits_for_all_four_runs_and_table6_reads_the_standard_models_three_ways():
    """The difference of drops reads four runs: one still climbing (GL+CL, causal) leaves it not judged,
    while the IB-GL-only drop is judged. Table 6's IB-GL must also beat the standard model read by the
    mean and by the last token: here the mean reading beats it."""
    from lbr_utils.studies.ch05b_lbr_ablations import TABLE4, drops_story, judged

    record = _ablations_record()
    for model, score in [("Standard SFT (mean)", 0.35), ("Standard SFT (last token)", 0.2)]:
        record["metrics"]["retrieval"] += [{"part": "style", "model": model, "domain": "medical", "seed": s,
                                            "metric": "NDCG@10", "score": score, "per_query": [score] * 40,
                                            "stage1_steps": 4, "stage2_steps": 0, "steps": 4} for s in (0, 1, 2)]
    climbing = [{"step": 1, "dev NDCG@10": 0.5}, {"step": 2, "dev NDCG@10": 0.6}]
    record["metrics"]["training"] = [{"part": "attention", "model": "GL+CL (causal)", "domain": "medical", "seed": s,
                                      "stage": 2, "steps": 2, "dev_curve": climbing, "final_loss": 0.1, "seconds": 1.0,
                                      "loss_curve": []}
                                     for s in (0, 1, 2)]
    record["config"] = {"stage2": {"batch_size": 8}}
    families = judged(record)
    attention = families[TABLE4].set_index("claim")
    assert attention.verdict.iloc[0] == "reproduced"
    assert attention.verdict.iloc[1] == "not judged: GL+CL (causal) not converged"
    style = families["Table 6: data style of stage 1"].set_index("claim").verdict
    assert style["IB-GL (SFT) beats Standard SFT read by its mean"] == "contradicted"
    assert style["IB-GL (SFT) beats Standard SFT read by its last token"] == "reproduced"
    retrieval = pd.DataFrame(record["metrics"]["retrieval"])
    story = drops_story(retrieval, families[TABLE4])
    assert "+1.0 [+1.0, +1.0] after GL" in story and "not judged" in story


def test_the_ablations_summary_reads_its_numbers_from_the_record():
    """"In brief" for 5b: a bullet per question with the record's numbers, the ratio sweep's widest seed
    spread, and the exploratory family kept out of the report's counts."""
    from lbr_utils.studies.ch05b_lbr_ablations import EXPLORATORY, judged, ratio_spread, summary_lines, synthesis

    record = _ablations_record() | {"config": {"stage1": {"steps": 4, "max_input": 48}, "ratios": [4.0, 8.0, 16.0, 32.0]},
                                    "provenance": {"seeds": [0, 1, 2]}}
    for row in record["metrics"]["retrieval"]:
        if row["model"] == "r=16":
            row["score"], row["per_query"] = 0.35 + 0.1 * row["seed"], [0.35 + 0.1 * row["seed"]] * len(row["per_query"])
    lines = summary_lines(record)
    assert "give k = 13, 7, 4, 2 bottleneck tokens" in lines[-1]
    assert any(line.startswith("- **Attention in stage 2 (Table 4):**") for line in lines)
    ratio = next(line for line in lines if line.startswith("- **The compression ratio"))
    assert "The highest mean is at r = 16" in ratio and "at r = 16, where their scores run from 35.0 to 55.0" in ratio
    assert ratio_spread(pd.DataFrame(record["metrics"]["retrieval"]))[16.0] == pytest.approx(20.0)
    assert lines[-1].startswith("- **What these runs cannot say:**")
    text = synthesis(record)
    counted = sum(len(t) for title, t in judged(record).items() if title != EXPLORATORY)
    assert f"{counted} claims:" in text and f"and {len(judged(record)[EXPLORATORY])} exploratory" in text


def test_the_best_ratio_is_its_own_exploratory_family():
    """r=16 scores best here: it is tested against both ends in a family of its own (picked on the
    queries that test it), apart from the confirmatory r=8 claims; with r=8 best there is none."""
    from lbr_utils.studies.ch05b_lbr_ablations import EXPLORATORY, LEAD, judged

    record = _ablations_record()
    assert EXPLORATORY not in judged(record)
    for row in record["metrics"]["retrieval"]:
        if row["model"] == "r=16":
            row["score"], row["per_query"] = 0.35, [0.35] * len(row["per_query"])
    families = judged(record)
    assert families[EXPLORATORY].claim.tolist() == [f"the best ratio, r=16, beats r={r} (exploratory: picked on these "
                                                    f"queries)" for r in (4, 32)]
    assert set(families[EXPLORATORY].verdict) <= {LEAD, "inconclusive"}  # never "reproduced": picked on its own queries
    assert len(families["Table 5: compression ratio (stage 1 only)"]) == 2


def test_the_generation_drop_is_told_from_the_run_numbers():
    """The paragraph under Table 2 reads the ROUGE-L claim, the two stage-1 losses and the squeeze of a
    median question from the results record."""
    from lbr_utils.studies.ch05a_lbr_stages import generation_story

    record = _stages_record(0.1)
    record["metrics"]["training"] = [r for r in record["metrics"]["training"] if r["stage"] == 2] + [
        {"model": m, "domain": "medical", "seed": s, "stage": 1, "steps": 4,
         "seconds": 1.0, "final_loss": loss, "dev_curve": [], "loss_curve": []}
        for m, loss in [("LLM+GL", 1.25), ("LLM+IB-GL", 2.5)] for s in (0, 1, 2)]
    record["metrics"]["compression"] = [{"domain": "medical", "texts": "stage-1 inputs (GL questions)",
                                         "median tokens": 10.0, "r": 8.0, "k": 7,
                                         "effective ratio n / k": 10 / 7}]
    story = generation_story(record)
    assert story.startswith("IB-GL's answers score -1.0 ROUGE-L points") and "reproduced against the 2-point" in story
    assert "**2.50** against GL's **1.25**" in story and "10 tokens is held by k = 7 states (effective ratio 1.4)" in story
    assert "leave the answer harder to predict" in story
    record["metrics"]["training"] = [dict(r, final_loss=1.0) if r["model"] == "LLM+IB-GL" else r
                                     for r in record["metrics"]["training"]]
    assert "did not leave the answer harder to predict" in generation_story(record)  # the clause follows the losses


def test_reusing_results_that_were_never_committed_says_how_to_compute_them(tmp_path, monkeypatch):
    from lbr_utils.studies import run_or_load

    monkeypatch.setenv("LBR_RESULTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="set reuse_results = False"):
        run_or_load("ch03_contrastive", "smoke", reuse=True)


@pytest.mark.parametrize("embedder", ["all-MiniLM-L6-v2", "SmolLM2"])
def test_one_query_as_infonce_sees_it_at_three_temperatures(embedder):
    """The answer first, then the closest other answers by cosine; each temperature's weights sum to
    1 and follow the cosines, and a lower temperature puts more weight on the top candidate."""
    from lbr_utils.studies.ch03_contrastive import temperature_weights

    query, table = temperature_weights("smoke", negatives=3, embedder=embedder)
    assert query and table.candidate.iloc[0] == "answer (positive)" and len(table) == 4
    assert list(table.cosine.iloc[1:]) == sorted(table.cosine.iloc[1:], reverse=True)
    weights = table.filter(like="weight at")
    assert np.allclose(weights.sum(), 1.0)
    assert (weights.rank().eq(table.cosine.rank(), axis=0)).all().all()
    assert weights["weight at t = 0.02"].max() > weights["weight at t = 0.1"].max()


def test_a_random_batch_is_seeded_and_no_closer_than_the_closest_one():
    """The in-batch view: negatives drawn with the seed (a rerun gives the same batch), each no closer
    to the query than the closest batch's negative of the same rank."""
    from lbr_utils.studies.ch03_contrastive import temperature_weights

    _, closest = temperature_weights("smoke", negatives=3)
    _, drawn = temperature_weights("smoke", negatives=3, batch="random")
    _, again = temperature_weights("smoke", negatives=3, batch="random")
    pd.testing.assert_frame_equal(drawn, again)
    assert (drawn.cosine.iloc[1:].to_numpy() <= closest.cosine.iloc[1:].to_numpy() + 1e-6).all()
    with pytest.raises(ValueError, match="closest.*random"):
        temperature_weights("smoke", batch="hardest")


def _contrastive_tables() -> tuple[list[str], dict[str, pd.DataFrame]]:
    """Chapter 3's tables, hand-made on 3 seeds and 40 queries: recipes at random scores, the hard-negative
    run at the base recipe's tokens 5 points above it, Matryoshka losing 5 points at 36 dims where the
    base loses 20, every dev curve flat, BM25 (untrained) at random scores too. Returns the trained
    models' names and the tables."""
    from lbr_utils.studies._contrastive_cells import BASE, EQUAL_COMPUTE, recipes
    from lbr_utils.studies.ch03_contrastive import ENCODER, HARD, chapter_recipe

    rng = np.random.default_rng(0)
    names = [*recipes(chapter_recipe(lbr_profile(get_profile("smoke")), 0)), ENCODER]
    retrieval = pd.DataFrame([{"model": m, "seed": s, "per_query": list(rng.uniform(0.3, 0.9, 40))}
                              for m in [*names, "BM25"] for s in range(3)])
    base = retrieval[retrieval.model == BASE]  # the hard-negative run at the base recipe's tokens: 5 points above
    retrieval = pd.concat([retrieval, base.assign(model=HARD + EQUAL_COMPUTE, **{"budget steps": [5, 4, 5]},
                                                  per_query=[list(np.add(p, 0.05)) for p in base.per_query])])
    geometry = pd.DataFrame([{"model": m, "seed": s, "pair_cosines": list(rng.uniform(0, 1, 40))}
                             for m in (BASE, "before training") for s in range(3)])
    full = {s: rng.uniform(0.5, 0.9, 40) for s in range(3)}
    mat = pd.DataFrame([{"model": m, "seed": s, "dim": d, "per_query": list(full[s] - drop)}
                        for s in range(3) for m, loss in (("Matryoshka", 0.05), (BASE, 0.2))
                        for d, drop in ((576, 0.0), (36, loss))])
    flat = [{"step": k, "dev NDCG@10": 0.8} for k in (2, 4, 6, 8)]
    training = pd.DataFrame([{"model": m, "seed": s, "steps": 8, "dev_curve": flat} for m in names for s in range(3)])
    return names, {"retrieval": retrieval, "geometry": geometry, "matryoshka": mat, "training": training}


def test_contrastive_claims_judge_matryoshka_by_its_drop_and_skip_a_climbing_recipe():
    """Chapter 3's family: the Matryoshka drop is a difference of differences, query by query; every
    trained recipe is in a claim; a recipe whose dev curve still climbs leaves its claims unjudged."""
    from lbr_utils.studies._contrastive_cells import BASE, EQUAL_COMPUTE
    from lbr_utils.studies.ch03_contrastive import HARD, survey_claims

    names, tables = _contrastive_tables()
    training = tables["training"]
    flat = training.dev_curve.iloc[0]
    judged = survey_claims(tables).set_index("claim")
    drop = judged.filter(like="loses less when truncated", axis=0).iloc[0]
    assert drop.ours == pytest.approx(15.0) and drop.verdict == "reproduced"  # (-5) - (-20) points, every query
    matched = judged.filter(like="within the base recipe's compute", axis=0).iloc[0]
    assert matched.ours == pytest.approx(5.0) and matched.verdict == "reproduced" and "within 4-5 steps" in matched.name
    at_full = judged.filter(like="at most 2 points at the full 576 dims", axis=0).iloc[0]
    assert at_full.ours == pytest.approx(0.0) and at_full.verdict == "reproduced"  # no loss at full dims, margin 2
    assert {n for n in names if n != BASE} <= set(judged.a) | set(judged.b)  # no recipe trained for nothing
    climbing = [{"step": k, "dev NDCG@10": 0.1 * k} for k in (4, 6, 8)]
    late = survey_claims(dict(tables, training=training.assign(
        dev_curve=[climbing if m == "t=0.1" else flat for m in training.model]))).set_index("claim")
    assert late.filter(like="0.1", axis=0).verdict.str.startswith("not judged").all()
    assert not late.filter(like="0.02", axis=0).verdict.str.startswith("not judged").any()
    # the compute-matched claim reads the hard-negative run's curve up to its snapshot (steps 4-5): a run
    # that climbs until then and is flat after is judged there all the same (it stops at a budget by
    # design), marked as still climbing
    early = [{"step": k, "dev NDCG@10": min(0.1 * k, 0.4)} for k in (2, 4, 6, 8)]
    snap = survey_claims(dict(tables, training=training.assign(
        dev_curve=[early if m == HARD else flat for m in training.model]))).set_index("claim")
    matched = snap.filter(like="within the base recipe's compute", axis=0).iloc[0]
    assert matched.verdict == "reproduced" and f"{HARD + EQUAL_COMPUTE} had not flattened" in matched.caveat
    assert not snap.filter(like="doubles each", axis=0).verdict.iloc[0].startswith("not judged")  # 8 steps: flat
    assert "at about 1.8x the base recipe's tokens a step" in snap.filter(like="doubles each", axis=0).index[0]  # 8 / 4.5


def test_a_run_is_read_at_its_best_dev_point_with_the_weights_it_had_there():
    """``dev_selection`` loads the weights of the chosen dev point after training went on: what it
    returns for step 2 of a 6-step run embeds as a 2-step run does (flat rate), and what it returns
    for the whole run scores on dev what the curve recorded at the step it names."""
    from dataclasses import replace

    from lbr_utils.contrastive import ContrastiveConfig, train_contrastive
    from lbr_utils.data import load_domain
    from lbr_utils.evaluate import ranked_ndcg
    from lbr_utils.studies._contrastive_cells import dev_selection

    splits = load_domain("medical", get_profile("smoke"))
    texts = [r.question for r in splits.cl[:3]]
    cfg = ContrastiveConfig(steps=2, batch_size=4, lr=1e-2, lora_rank=4, max_length=16, schedule="constant",
                            warmup_steps=1, eval_every=2)
    short, _ = train_contrastive(*build_tiny(), splits.cl, cfg, show_progress=False)
    with dev_selection(*build_tiny(), splits.cl, replace(cfg, steps=6), splits.dev) as (result, select):
        assert [p["step"] for p in result.curve] == [2, 4, 6]
        early, step = select(3)
        assert step == 2
        assert np.allclose(early.embed(texts), short.embed(texts), atol=1e-5)
        best, step = select(None)
        assert step == max(result.curve, key=lambda p: p["dev NDCG@10"])["step"]
        again = ranked_ndcg(best.replace(bf16=True).embed, splits.dev)
        point = next(p for p in result.curve if p["step"] == step)
        assert sum(again.values()) / len(again) == pytest.approx(point["dev NDCG@10"], abs=1e-6)
        with pytest.raises(ValueError, match="no dev point at or before step 1"):
            select(1)


def test_the_chapter_3_summary_reads_its_numbers_from_the_tables():
    """Scores, where the runs peaked and what reading them at their last step would have lost, and the
    decided claims, from hand-made tables."""
    from lbr_utils.studies._contrastive_cells import BASE
    from lbr_utils.studies.ch03_contrastive import ENCODER, summary_lines

    retrieval = pd.DataFrame([{"model": m, "seed": s, "per_query": [v] * 4}
                              for m, v in (("before training", 0.3), (BASE, 0.7), ("all-MiniLM-L6-v2", 0.8), (ENCODER, 0.75))
                              for s in (0, 1)])
    curve = [{"step": k, "dev NDCG@10": v} for k, v in ((100, 0.5), (200, 0.8), (300, 0.7))]
    training = pd.DataFrame([{"model": m, "seed": 0, "steps": 300, "selected step": 200, "dev_curve": curve}
                             for m in (BASE, "t=0.1")] + [{"model": ENCODER, "seed": 0, "steps": 99, "dev_curve": []}])
    lands, peak = summary_lines({"retrieval": retrieval, "training": training})
    assert f"before training 30.0, {BASE} 70.0, all-MiniLM-L6-v2 80.0, {ENCODER} 75.0" in lands
    assert "(steps 200 of 300)" in peak and "scored 10.0 dev points lower (mean 10.0). That is an upper bound" in peak


def test_the_hard_negative_run_read_at_two_checkpoints_shows_how_much_the_choice_moves_a_score():
    """The compute-matched row is one run read at its best dev point within a budget: the table gives
    its step over the budget ("4/5"), not over the run, and where that checkpoint differs from the
    run's best the summary says how far apart the two score on dev and on the evaluation queries."""
    from lbr_utils.studies._contrastive_cells import BASE, EQUAL_COMPUTE
    from lbr_utils.studies.ch03_contrastive import HARD, checkpoint_spread, steps_column, summary_lines

    _, tables = _contrastive_tables()
    retrieval = tables["retrieval"].assign(steps=lambda t: np.where(t.model == HARD + EQUAL_COMPUTE, 4, 8))
    curve = [{"step": k, "dev NDCG@10": v} for k, v in ((2, 0.5), (4, 0.79), (6, 0.7), (8, 0.8))]
    training = tables["training"].assign(**{"selected step": 8}, dev_curve=[curve] * len(tables["training"]))
    tables = dict(tables, retrieval=retrieval, training=training)
    assert steps_column(tables)[HARD + EQUAL_COMPUTE] == "4/5, 4/4, 4/5" and steps_column(tables)[BASE] == "8/8, 8/8, 8/8"
    spread = checkpoint_spread(tables)
    eval_best = [100 * np.mean(p) for p in retrieval[retrieval.model == HARD].per_query]
    assert spread.seed.tolist() == [0, 1, 2] and spread["eval, best"].tolist() == pytest.approx(eval_best)
    assert spread["dev, best"].tolist() == pytest.approx([80.0] * 3) and (spread["budget step"] == 4).all()
    line = summary_lines(tables)[-1]
    assert line.startswith("- **How much the checkpoint matters.** The hard-negative run read at two of its dev points "
                           "(steps 8 vs 4, 8 vs 4, 8 vs 4") and "where the two dev points differ by 1.0." in line
    same = dict(tables, training=training.assign(**{"selected step": 4}))
    assert checkpoint_spread(same).empty and "checkpoint matters" not in summary_lines(same)[-1]


def test_the_guard_counts_find_copied_negatives_and_same_entity_batch_mates():
    """Two questions of entity A share one answer: without the filter BM25 mines each one's copy of the
    positive (2 of 4 mined negatives), and a batch of all four holds 12 candidates, 2 of them masked
    (each A answer for the other A question)."""
    from lbr_utils.contrastive import ContrastiveConfig
    from lbr_utils.data import QARecord
    from lbr_utils.studies.ch03_contrastive import guard_counts

    rec = lambda i, q, a, e: QARecord(id=str(i), domain="medical", question=q, answer=a, entity=e)
    records = [rec(0, "acute bronchitis cough", "acute bronchitis with cough", "A"),
               rec(1, "bronchitis acute", "acute bronchitis with cough", "A"),
               rec(2, "fracture of the femur", "femur fracture, closed", "B"),
               rec(3, "migraine headache", "migraine without aura", "C")]
    counts = guard_counts(records, ContrastiveConfig(steps=1, batch_size=4))
    assert counts == {"mined negatives": 4, "same entity": 2, "same text as the positive": 2,
                      "in-batch candidates": 12, "masked in-batch": 2}
    with pytest.raises(ValueError, match="too few"):
        guard_counts(records[:1], ContrastiveConfig())


def test_the_guard_line_says_which_guard_removes_more_per_step():
    """Per step of 4 pairs: half the mined negatives share the query's entity (2 filtered a step); 2
    seeds x 10 steps mask 4 candidates in all (0.2 a step), so the claim measures mostly the filter;
    with 100 masked (5 a step) it is mostly the mask, with 60 (3 a step) both alike."""
    from lbr_utils.contrastive import ContrastiveConfig
    from lbr_utils.studies.ch03_contrastive import guard_line

    cfg = ContrastiveConfig(steps=10, batch_size=4)
    guards = pd.DataFrame([{"mined negatives": 20, "same entity": 10, "same text as the positive": 5,
                            "in-batch candidates": 120, "masked in-batch": 2}] * 2)
    line = guard_line(guards, cfg)
    assert line.startswith("Without the filter, 50% of the mined negatives belong to the query's own entity (25% "
                           "repeat its positive word for word); the in-batch mask removes 1.67% of the batch candidates.")
    assert "about 2.0 mined negatives filtered against 0.20 batch candidates masked" in line
    assert "measures mostly the filter on mined negatives." in line and "about 2.0 times" in line  # 40 / 20
    assert "mostly the in-batch mask" in guard_line(guards.assign(**{"masked in-batch": 50}), cfg)
    assert "the filter and the mask alike" in guard_line(guards.assign(**{"masked in-batch": 30}), cfg)


def test_chapter_3s_answer_follows_its_verdicts():
    """Each ingredient's sentence follows its claim's verdict, with its difference: the hard negative 5
    points up at equal compute helps; Matryoshka 15 points better at 36 dims pays off; recipes at random
    scores leave the temperature open, and the open claims send the reader to their seed counts. Without
    Matryoshka runs its sentence is left out, not guessed."""
    from lbr_utils.studies._contrastive_cells import BASE, EQUAL_COMPUTE
    from lbr_utils.studies.ch03_contrastive import HARD, answer_lines, survey_claims

    _, tables = _contrastive_tables()
    judged = survey_claims(tables)
    answer, leaves_out, decide = answer_lines(judged, tables)
    assert f"At the base recipe's compute, it helps ({HARD + EQUAL_COMPUTE} minus {BASE}: +5.0 [" in answer
    assert f"pays off when the vector is cut to 36 dims (Matryoshka minus {BASE}: +15.0 [" in answer
    assert judged.set_index("b").loc["t=0.02"].verdict == "inconclusive"  # random scores: +1.3 [-5.0, +7.4]
    assert f"Between t = 0.05 and 0.02 the runs do not decide ({BASE} minus t=0.02: +1.3 [" in answer
    assert "More seeds: for the " in decide and "than the 40 each run is scored on" in decide
    assert "Whether it beats BM25 is not decided" in answer  # random scores against random scores
    assert "MiniLM+CL given the LLM's chances: it trains for 8 steps (at most the LLM recipes' 8)" in leaves_out
    bare = answer_lines(survey_claims(dict(tables, matryoshka=pd.DataFrame())), tables)[0]
    assert "Matryoshka" not in bare and "At the base recipe's compute, it helps" in bare
    # the full run's best dev point within every seed's budget (4-5 steps): the same checkpoint, judged
    # once (a second row would count its differences twice in the Holm family)
    within = dict(tables, training=tables["training"].assign(**{"selected step": 4}))
    same = survey_claims(within)
    assert not same.claim.str.contains("within the base recipe's compute").any() and len(same) == len(judged) - 1
    assert "At the base recipe's compute the reading is the same" in answer_lines(same, within)[0]
    beyond = dict(tables, training=tables["training"].assign(**{"selected step": 6}))
    assert survey_claims(beyond).claim.str.contains("within the base recipe's compute").sum() == 1


def test_the_chapter_5a_summary_reads_its_numbers_from_the_record():
    """"In brief": the headline's verdict and difference, the paper-in-CI count, the squeeze of a
    stage-1 question and the stage-1 loss change all come from the results record."""
    from lbr_utils.studies.ch05a_lbr_stages import summary_lines

    lines = summary_lines(_stages_record(0.10))
    headline = next(line for line in lines if line.startswith("- **The headline"))
    assert "medical: reproduced, +10." in headline
    assert "inside our CI for" in lines[1] and "by only 1.1 (medical)" in lines[-1]
    assert "-0.10 to -0.10 nats" in lines[-1]  # losses 1.9 .. 1.6 over steps 1-4: the 3rd quarter's 1.7, the 4th's 1.6


def test_the_layer_lines_say_what_their_numbers_say():
    """Hand-made scores: through the norm every intermediate layer beats the last and falls with depth;
    in the residual stream only layer 7 beats it, and nothing falls steadily."""
    from lbr_utils.studies.ch02_pooling import layer_lines

    scores = {"mean": 0.20, "mean (layer 7)": 0.25, "mean (layer 15)": 0.02, "mean (layer 22)": 0.30,
              "mean (layer 7, final norm)": 0.36, "mean (layer 15, final norm)": 0.25, "mean (layer 22, final norm)": 0.22}
    ndcg = pd.DataFrame({"medical": scores, "code": scores})
    stream, norm = layer_lines(ndcg)
    assert "layer 7 **25.0**, layer 15 **2.0**, layer 22 **30.0**, last layer **20.0**: layers 7, 22 beat the last." in stream
    assert norm.endswith("every intermediate layer beats the last, and the score falls with every step in depth.")


def test_a_halving_is_not_judged_when_holm_leaves_its_clean_leak_undecided():
    """The gate after Holm: the decoder's clean leak ended inconclusive, so its halving is withdrawn;
    the adaptive probe's halving answers to the probe's clean leak, which held."""
    from lbr_utils.studies.ch07_inversion import ADAPTIVE, NO_LEAK, PROBE, _halving_needs_a_leak

    family = pd.DataFrame([
        {"embedder": "e", "a": "decoder", "claim": "stored embeddings leak their text: the decoder ...", "verdict": "inconclusive"},
        {"embedder": "e", "a": PROBE, "claim": "stored embeddings leak their text: the probe ...", "verdict": "reproduced"},
        {"embedder": "e", "a": "decoder", "claim": "noise at 0.01 (...) halves the decoder's leak", "verdict": "reproduced"},
        {"embedder": "e", "a": ADAPTIVE, "claim": "noise at 0.01 (...) halves the adaptive probe's leak", "verdict": "contradicted"}])
    assert _halving_needs_a_leak(family).verdict.tolist() == [
        "inconclusive", "reproduced", f"not judged: {NO_LEAK}", "contradicted"]


def test_written_negatives_are_flagged_for_copies_paraphrases_and_loops():
    """By hand: a near-copy, a paraphrase MiniLM puts closer to the query than the positive, a loop,
    and a real negative (no flag)."""
    from lbr_utils.studies.ch04_synthetic import negative_flags

    neg = pd.DataFrame({"near-copy of the positive": [True, False, False, False],
                        "cos(query, written negative)": [0.5, 0.9, 0.3, 0.4],
                        "cos(query, positive)": [0.8, 0.8, 0.8, 0.8],
                        "written negative": ["Fracture of humerus", "Broken upper arm bone",
                                             "teeth, teeth, teeth, teeth, teeth", "Fracture of the femur"]})
    flags = negative_flags(neg)
    assert flags["any of these"].tolist() == [True, True, True, False]
    assert flags["closer to the query than the positive"].tolist() == [False, True, False, False]
    assert flags["a degenerate loop"].tolist() == [False, False, True, False]


def test_chapter_4s_summary_counts_the_funnel_the_judge_and_the_arms_from_the_tables():
    """Two seeds of 4 written queries: seed 0 keeps 2 (one copy dropped, one inconsistent), seed 1 keeps
    1; BM25 puts kept queries' documents at rank 1, the dropped one's at 3; an empty negatives table
    (no kept query got one) leaves its line out rather than failing."""
    from lbr_utils.studies._synthetic_cells import CHECKS
    from lbr_utils.studies.ch04_synthetic import negative_flags, summary_lines

    def query(seed, failed=None, rank=1):
        return {"seed": seed, **{c: c == failed for c in CHECKS}, "kept": failed is None, "BM25 rank": rank}

    queries = pd.DataFrame([query(0), query(0), query(0, "copies its document"), query(0, "not consistent", 3),
                            query(1), query(1, "copies its document"), query(1, "copies its document"),
                            query(1, "empty")])
    tables = {"queries": queries, "negatives": pd.DataFrame(),
              "sizes": pd.DataFrame([{"seed": 0, "dataset": "human", "pairs": 2}, {"seed": 1, "dataset": "human", "pairs": 1}]),
              "training": pd.DataFrame([{"seed": 0, "model": "human", "steps": 10}, {"seed": 1, "model": "human", "steps": 5}])}
    keep, judge, rest = summary_lines(tables, {"config": {"epochs": 10, "profile": {"n_cl": 1000}}})
    assert keep.startswith("- **What the checks keep:** 2 (per seed 1-2) of 4 written queries per seed (38%)")
    assert '"not a copy of its document" (2 queries per seed on average)' in keep  # (1 + 2) / 2 rounds to 2
    # BM25 ranks the own document first for all 3 kept queries, and not for the 1 the filter dropped
    assert "first for 100% of the kept queries and 0% of the dropped ones" in judge and "findability" in judge
    assert "2 (per seed 1-2) pairs per arm" in rest and "8 (per seed 5-10) steps" in rest
    assert list(negative_flags(pd.DataFrame()).columns)[-1] == "any of these"
    # with scores: MiniLM as is, BM25 and MiniLM fine-tuned against the best arm
    tables["retrieval"] = pd.DataFrame([{"model": m, "seed": 0, "per_query": [v] * 3}
                                        for m, v in (("all-MiniLM-L6-v2", 0.8), ("BM25", 0.65), ("MiniLM+CL", 0.9),
                                                     ("human", 0.6), ("synthetic", 0.7))])
    encoder = summary_lines(tables, {"config": {"epochs": 10, "profile": {"n_cl": 1000}}})[-1]
    assert "all-MiniLM-L6-v2 as is scores 80.0 NDCG@10 (mean over seeds), BM25 65.0, MiniLM+CL 90.0" in encoder
    assert "all 1000 human pairs" in encoder and '"synthetic", 70.0. No arm reaches the encoder as is' in encoder
    # with final losses: how closely the arms fit their pairs, against chance (ln 8 for a batch of 8)
    tables["training"] = tables["training"].assign(final_loss=[0.004, 0.03])
    rest = summary_lines(tables, {"config": {"epochs": 10, "profile": {"n_cl": 1000}, "recipe": {"batch_size": 8}}})[-2]
    assert "training loss of 0.004-0.030 nats against 2.08 at chance" in rest
    # twice the epochs: the best dev point 2 and 4 points up, the evaluation score 0.5 up
    curve = lambda *v: [{"step": i, "dev NDCG@10": x} for i, x in enumerate(v)]
    tables["training"] = pd.DataFrame([
        {"seed": 0, "model": "human", "steps": 10, "final_loss": 0.01, "dev_curve": curve(0.5, 0.7)},
        {"seed": 1, "model": "human", "steps": 10, "final_loss": 0.01, "dev_curve": curve(0.6, 0.6)},
        {"seed": 0, "model": "human, twice the epochs", "steps": 20, "final_loss": 0.01, "dev_curve": curve(0.7, 0.72)},
        {"seed": 1, "model": "human, twice the epochs", "steps": 20, "final_loss": 0.01, "dev_curve": curve(0.6, 0.64)}])
    tables["retrieval"] = pd.concat([tables["retrieval"], pd.DataFrame(
        [{"model": "human, twice the epochs", "seed": 0, "per_query": [0.605] * 3}])])
    longer = next(line for line in summary_lines(tables, {"config": {"epochs": 10, "profile": {"n_cl": 1000},
                                                                     "recipe": {"batch_size": 8}}})
                  if "under-trained" in line)
    assert "best dev point is +3.0 (per seed +2.0 to +4.0) points higher, its evaluation score +0.5 (60.5 against 60.0" in longer
    assert "less than a point" in longer


def test_the_hard_negative_run_is_scored_when_it_has_spent_the_base_recipes_tokens():
    """Questions of 1 word, answers of 3 (a tokenizer that counts words): a base step of 2 pairs costs
    2 x (1 + 3) = 8 tokens, 7 steps 56; a step with one hard negative a pair costs 2 x (1 + 3 + 3) = 14,
    so the budget is spent after 4 steps (counting texts, 3/2 a pair, would have said 5)."""
    from lbr_utils.contrastive import ContrastiveConfig
    from lbr_utils.data import QARecord
    from lbr_utils.studies._contrastive_cells import equal_compute_step

    class Words:
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[0] * len(t.split()) for t in texts]}

    records = [QARecord(id=str(i), domain="medical", question=f"w{i}", answer=f"w{i} x{i} y{i}", entity=str(i))
               for i in range(6)]
    cfg = ContrastiveConfig(steps=7, batch_size=2, max_length=16, hard_negatives=1)
    assert equal_compute_step(Words(), records, cfg) == 4


def test_a_synthetic_query_that_quotes_or_copies_its_card_is_caught():
    """A code whole or cut short by the writer's token limit is quoted ("B12" is a vitamin, not a code);
    a query that copies the card's parent description is a copy, though under the threshold against
    the whole card."""
    from lbr_utils.data import QARecord
    from lbr_utils.studies._synthetic_cells import _copies, _quotes_code

    card = QARecord(id="x", domain="medical", question="q", entity="T42.8", group="T42",
                    answer="Poisoning by antiparkinsonism drugs (ICD-10-CM T42.8; Poisoning by antiepileptic, "
                           "sedative- hypnotic and antiparkinsonism drugs)")
    assert [_quotes_code(t, card) for t in ["low vitamin B12", "heart attack (ICD-10-CM I2", "t42.8 poisoning",
                                            "drug poisoning"]] == [False, True, True, False]
    assert _copies(["poisoning by antiepileptic, sedative- hypnotic and antiparkinsonism drugs", "aspirin overdose"],
                   [card, card]) == [True, False]


def test_a_contrastive_run_at_chance_loss_is_a_failed_run_and_its_seed_is_left_out():
    """Seed 2's loss hovers at 1.95 over its last quarter, under ln 8 = 2.08 but above 0.9 of it (masked
    false negatives make chance a little lower): it never learned, though its last steps' mean could
    dip under chance; the seeds whose loss fell are not flagged. Alone, it is the arm's result (as in a
    smoke run, too short for any seed to learn), and every table keeps a seed to judge."""
    from lbr_utils.studies.ch05b_lbr_ablations import failed_runs

    def curve(tail: float) -> list[dict]:
        return [{"step": step, "loss": 2.5 if step <= 300 else tail} for step in range(10, 410, 10)]

    training = pd.DataFrame([{"part": "attention", "model": "GL+CL (bidirectional)", "stage": 2, "steps": 400,
                              "seed": s, "final_loss": 1.9, "loss_curve": curve(tail), "domain": "medical",
                              "seconds": float(s)} for s, tail in ((0, 0.03), (1, 0.05), (2, 1.95))])
    assert failed_runs(training, batch_size=8) == {("attention", "GL+CL (bidirectional)", 400): [2]}
    assert failed_runs(training[training.seed < 2], batch_size=8) == {}
    assert failed_runs(training[training.seed == 2], batch_size=8) == {}  # no seed learned: the arm's own result
