"""The study modules: one shape for every chapter, cells computed once, claims judged from the files,
and the chapter 7 scoring helpers."""

import numpy as np
import pandas as pd
import pytest

from lbr_utils.models import build_tiny
from lbr_utils.profiles import get_profile
from lbr_utils.stats import spread
from lbr_utils.studies import CHAPTERS, _lbr_cells, study
from lbr_utils.studies.ch05a_lbr_stages import stage_claims


def survey_claims(records: dict) -> pd.DataFrame:
    """Every chapter's survey claims from ``records``, as the report gathers them."""
    tables = [t for name in CHAPTERS if "survey" in (t := study(name).claims(records))]
    return pd.concat([t["survey"] for t in tables], ignore_index=True) if tables else pd.DataFrame()


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


def _stages_record(ib_cl_score: float) -> dict:
    models = ["LLM", "LLM+GL", "LLM+IB-GL", "LLM+CL", "LLM+GL+CL", "LLM+IB-GL+CL"]
    base = dict(zip(models, [0.10, 0.12, 0.20, 0.40, 0.38, ib_cl_score]))
    retrieval = [{"model": m, "domain": "medical", "seed": s, "metric": metric, "score": base[m] + 0.01 * s}
                 for m in models for s in (0, 1) for metric in ("NDCG@10", "R@10")]
    generation = [{"model": m, "domain": "medical", "seed": s, "BLEU-4": b, "ROUGE-L": 2 * b}
                  for m, b in [("LLM", 1.0), ("LLM+GL", 10.0), ("LLM+IB-GL", 9.0), ("LLM+CL", 0.5)] for s in (0, 1)]
    separation = [{"model": m, "domain": "medical", "seed": s, "separation_ratio": base[m] * 10 + s}
                  for m in models[:3] for s in (0, 1)]
    return {"retrieval": retrieval, "generation": generation, "separation": separation}


def test_the_spread_beside_a_claim_is_the_per_seed_standard_deviation():
    assert spread([0.10, 0.12]) == pytest.approx(100 * 0.02 / 2 ** 0.5)  # ddof 1: sqrt(2 * 0.01**2 / 1)
    assert pd.isna(spread([0.10]))
    rows = _stages_record(0.50)["retrieval"]
    for r in rows:  # seed 1 of IB-GL+CL gains 2 points: differences to CL of 10 and 12
        r["score"] += 0.02 if (r["model"], r["seed"]) == ("LLM+IB-GL+CL", 1) else 0.0
    claim = stage_claims(pd.DataFrame(rows)).set_index("claim").loc["IB-GL first beats contrastive learning alone"]
    assert claim["ours: mean diff (x100)"] == pytest.approx(11.0) and claim["± std"] == pytest.approx(2 ** 0.5)


def test_survey_claims_follow_the_chapter_results():
    """The synthetic-data claim is judged from chapter 4's scores: better with synthetic pairs is
    'reproduced', worse 'not reproduced'; a chapter without results adds no claim."""
    def synthetic(both: float) -> dict:
        scores = {"human": 0.50, "synthetic (filtered)": 0.45, "human + synthetic": both}
        return {"metrics": {"retrieval": [{"model": m, "task": "medical", "metric": "NDCG@10", "score": s}
                                          for m, s in scores.items()]}}

    up = survey_claims({"ch04_synthetic": synthetic(0.53)}).set_index("claim")
    row = up.loc["LLM-synthesised pairs added to human pairs improve the embedder"]
    assert row["verdict"] == "reproduced" and abs(row["ours (x100)"] - 3.0) < 1e-9
    down = survey_claims({"ch04_synthetic": synthetic(0.47)}).set_index("claim")
    assert down.loc["LLM-synthesised pairs added to human pairs improve the embedder", "verdict"] == "not reproduced"
    assert len(up) == 2 and survey_claims({}).empty


def test_compression_and_inversion_claims_by_hand():
    """Chapter 6's claims compare compressed with truncated at one budget; chapter 7's compares the
    inverter's token F1 from the own embedding with the template floor."""
    quality = [{"domain": d, "task": t, "mode": m, "ratio": r, metric: v}
               for d, t, metric, m, r, v in [
                   ("medical", "qa", "exact_match", "compressed", 8.0, 40.0), ("medical", "qa", "exact_match", "truncated", 8.0, 10.0),
                   ("medical", "qa", "exact_match", "compressed", 4.0, 0.0), ("medical", "qa", "exact_match", "truncated", 4.0, 90.0),
                   ("medical", "qa", "exact_match", "full", None, 99.0),
                   ("code", "reconstruct", "token_accuracy", "compressed", 2.0, 30.0),
                   ("code", "reconstruct", "token_accuracy", "truncated", 2.0, 50.0)]]
    decoding = [{"reading": "full", "passage_tokens": 256, "ms_per_token": 10.0},
                {"reading": "compressed (r=8)", "passage_tokens": 256, "ms_per_token": 8.0}]
    inversion = {"inversion": [{"embedder": "e", "noise": 0.0, "token_f1": 60.0}, {"embedder": "e", "noise": 0.1, "token_f1": 5.0}],
                 "floor": [{"embedder": "e", "token_f1": 35.0}]}
    claims = survey_claims({"ch06_compression": {"metrics": {"quality": quality, "decoding": decoding}},
                            "ch07_inversion": {"metrics": inversion}}).set_index("evidence")
    qa = claims.loc["QA exact match, per domain (chapter 6)"]
    assert qa["ours (x100)"] == pytest.approx(30.0) and qa["units"] == 1 and qa["verdict"] == "reproduced"
    rec = claims.loc["token accuracy, per (domain, ratio) (chapter 6)"]
    assert rec["ours (x100)"] == pytest.approx(-20.0) and rec["verdict"] == "not reproduced"
    assert claims.loc["share of time per token saved, per passage length (chapter 6)", "ours (x100)"] == pytest.approx(20.0)
    leak = claims.loc["token F1 from the own embedding minus from another text's, per embedder (chapter 7)"]
    assert leak["ours (x100)"] == pytest.approx(25.0) and leak["verdict"] == "reproduced"
    no_floor = {"ch07_inversion": {"metrics": {"inversion": inversion["inversion"]}}}
    assert study("ch07_inversion").claims(no_floor) == {}  # no floor: nothing to judge against


def test_noisy_corpus_embedder_perturbs_stored_documents_only():
    from lbr_utils.studies.ch07_inversion import noisy_corpus_embedder

    embed = lambda texts: np.array([[1.0, 0.0] if t.startswith("d") else [0.0, 1.0] for t in texts])
    fn = noisy_corpus_embedder(embed, ["d1", "d2"], scale=0.5, seed=0)
    out = fn(["d1", "q", "d2"])
    assert np.allclose(out[1], [0.0, 1.0])  # a query is only normalised
    assert not np.allclose(out[0], [1.0, 0.0]) and not np.allclose(out[0], out[2])


def test_halving_table_finds_the_first_noise_that_halves_f1():
    from lbr_utils.studies.ch07_inversion import halving_table

    inv = pd.DataFrame({"embedder": ["a"] * 3 + ["b"] * 2, "noise": [0.1, 0.0, 0.2, 0.0, 0.1],
                        "token_f1": [30.0, 40.0, 10.0, 50.0, 45.0], "NDCG@10": [0.5, 0.6, 0.2, 0.7, 0.69]})
    table = halving_table(inv).set_index("embedder")
    assert table.loc["a", "noise where F1 halves"] == 0.2
    assert table.loc["a", "NDCG@10 cost (points)"] == pytest.approx(40.0)
    assert table.loc["b", "noise where F1 halves"] == "> 0.1"
    assert np.isnan(table.loc["b", "token F1 there"])
    # Measured from a floor of 20 (the template alone), "halfway" is 30, which noise 0.1 reaches.
    floor = pd.DataFrame({"embedder": ["a", "b"], "token_f1": [20.0, 0.0]})
    assert halving_table(inv, floor).set_index("embedder").loc["a", "noise where F1 halves"] == 0.1
    at_floor = pd.DataFrame({"embedder": ["a", "b"], "token_f1": [45.0, 60.0]})
    table = halving_table(inv, at_floor).set_index("embedder")
    assert table.loc["b", "noise where F1 halves"] == "no leak to halve" and table.loc["b", "leak above the floor"] == -10.0


def test_inversion_scores_count_entities_by_hand():
    from lbr_utils.studies.ch07_inversion import inversion_scores

    _, tok = build_tiny()
    texts = ["Asthma (ICD-10-CM J45; a lung disease)", "Gout (ICD-10-CM M10; a joint disease)"]
    guesses = [texts[0], "gout of the knee (ICD-10-CM M11)"]
    s = inversion_scores(tok, guesses, texts)
    assert s["exact_match"] == 50.0 and s["codes_recovered"] == 50.0 and s["conditions_recovered"] == 100.0
    assert 50.0 < s["token_f1"] < 100.0
