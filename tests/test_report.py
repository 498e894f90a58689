"""The reproduction report page is made from the results files, and a stale page fails here."""

import pandas as pd
import pytest

from lbr_utils.report import PAGE, reproduction_page
from lbr_utils.results import REPO_ROOT


def test_the_committed_page_matches_the_results_files(monkeypatch):
    monkeypatch.delenv("LBR_RESULTS_DIR")  # read the repository's own results
    page = (REPO_ROOT / PAGE).read_text()
    assert page == reproduction_page("cpu"), "book/reproduction.md is stale: run python -m lbr_utils.report"


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
    from lbr_utils.report import spread, stage_claims

    assert spread([0.10, 0.12]) == pytest.approx(100 * 0.02 / 2 ** 0.5)  # ddof 1: sqrt(2 * 0.01**2 / 1)
    assert pd.isna(spread([0.10]))
    rows = _stages_record(0.50)["retrieval"]
    for r in rows:  # seed 1 of IB-GL+CL gains 2 points: differences to CL of 10 and 12
        r["score"] += 0.02 if (r["model"], r["seed"]) == ("LLM+IB-GL+CL", 1) else 0.0
    claim = stage_claims(pd.DataFrame(rows)).set_index("claim").loc["IB-GL first beats contrastive learning alone"]
    assert claim["ours: mean diff (x100)"] == pytest.approx(11.0) and claim["± std"] == pytest.approx(2 ** 0.5)

def test_the_page_follows_the_results_file(tmp_path, monkeypatch):
    """Numbers and verdicts on the page move with the file: IB-GL+CL above CL is 'reproduced', below it
    'not reproduced', and the printed difference is the file's."""
    from lbr_utils.results import save_results

    monkeypatch.setenv("LBR_RESULTS_DIR", str(tmp_path))
    config = {"profile": {"model": "tiny", "n_gl": 8, "n_cl": 8, "n_eval": 4, "batch_size": 2, "max_length": 16},
              "stage1": {"steps": 1}, "stage2": {"steps": 1}}
    save_results("lbr_stages", "cpu", _stages_record(0.50), config, [0, 1], 1.0)
    page = reproduction_page("cpu")
    line = next(l for l in page.splitlines() if l.startswith("| IB-GL first beats contrastive learning alone"))
    assert "10.00" in line and "reproduced" in line and "not reproduced" not in line
    assert "IB-GL keeps GL's generation" in page and "0.90" in page  # BLEU ratio 9 / 10
    save_results("lbr_stages", "cpu", _stages_record(0.30), config, [0, 1], 1.0)
    line = next(l for l in reproduction_page("cpu").splitlines()
                if l.startswith("| IB-GL first beats contrastive learning alone"))
    assert "-10.00" in line and "not reproduced" in line


def test_survey_claims_follow_the_chapter_results():
    """The synthetic-data claim is judged from chapter 4's scores: better with synthetic pairs is
    'reproduced', worse 'not reproduced'; a chapter without results adds no claim."""
    from lbr_utils.report import survey_claims

    def synthetic(both: float) -> dict:
        scores = {"human": 0.50, "synthetic (filtered)": 0.45, "human + synthetic": both}
        return {"metrics": {"retrieval": [{"model": m, "task": "medical", "metric": "NDCG@10", "score": s}
                                          for m, s in scores.items()]}}

    up = survey_claims({"synthetic": synthetic(0.53)}).set_index("claim")
    row = up.loc["LLM-synthesised pairs added to human pairs improve the embedder"]
    assert row["verdict"] == "reproduced" and abs(row["ours (x100)"] - 3.0) < 1e-9
    down = survey_claims({"synthetic": synthetic(0.47)}).set_index("claim")
    assert down.loc["LLM-synthesised pairs added to human pairs improve the embedder", "verdict"] == "not reproduced"
    assert len(up) == 2 and survey_claims({}).empty


def test_compression_and_inversion_claims_by_hand():
    """Chapter 6's claims compare compressed with truncated at one budget; chapter 7's compares the
    inverter's token F1 from the own embedding with the template floor."""
    from lbr_utils.report import inversion_claims, survey_claims

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
    claims = survey_claims({"compression": {"metrics": {"quality": quality, "decoding": decoding}},
                            "inversion": {"metrics": inversion}}).set_index("evidence")
    qa = claims.loc["QA exact match, per domain (chapter 6)"]
    assert qa["ours (x100)"] == pytest.approx(30.0) and qa["units"] == 1 and qa["verdict"] == "reproduced"
    rec = claims.loc["token accuracy, per (domain, ratio) (chapter 6)"]
    assert rec["ours (x100)"] == pytest.approx(-20.0) and rec["verdict"] == "not reproduced"
    assert claims.loc["share of time per token saved, per passage length (chapter 6)", "ours (x100)"] == pytest.approx(20.0)
    leak = claims.loc["token F1 from the own embedding minus from another text's, per embedder (chapter 7)"]
    assert leak["ours (x100)"] == pytest.approx(25.0) and leak["verdict"] == "reproduced"
    assert inversion_claims({"inversion": inversion["inversion"]}) == []  # no floor: nothing to judge against


def test_cost_table_flags_notebooks_over_the_budget():
    from lbr_utils.report import cost_table

    table = cost_table([{"notebook": "a", "wall_time_s": 2700.0, "peak_memory_mib": 8192.0},
                        {"notebook": "b", "wall_time_s": 2701.0, "peak_memory_mib": 100.0},
                        {"notebook": "c", "wall_time_s": 60.0, "peak_memory_mib": 8193.0, "note": "cached"}])
    assert table["within budget"].tolist()[:2] == ["yes", "no"] and pd.isna(table["within budget"].iloc[2])  # a noted row is not judged
    assert table["wall time (min)"].iloc[0] == 45.0 and table["note"].iloc[2] == "cached"
