"""The split study's progress listing: every model of chapters 5a/5b by name, found by the keys the
chapters themselves use, and nothing computed to find out."""

import json

import pandas as pd

from lbr_utils.profiles import get_profile, lbr_profile
from lbr_utils.studies import ch05a_lbr_stages as stages
from lbr_utils.studies import progress


def test_progress_lists_every_model_and_finds_a_stored_cell_without_computing(tmp_path, monkeypatch):
    monkeypatch.setenv("LBR_CELLS", str(tmp_path))
    table = progress.lbr_cells("smoke", domains=("medical",), seeds=(0,))
    assert not table.done.any() and table.key.is_unique and not (tmp_path / "lbr_cells").exists()
    arms = [a.name for a in stages.arms(lbr_profile(get_profile("smoke")), 0)]
    assert table[table.chapter == "5a"].model.tolist()[:len(arms)] == arms
    assert {"BM25", "MiniLM+CL (256 tokens)", "ratio: r=16", "attention: GL+CL (bidirectional)"} <= set(table.model)

    lbr = table[table.model == stages.LBR].iloc[0]  # a finished cell, as a run would have stored it
    (tmp_path / "lbr_cells").mkdir()
    (tmp_path / "lbr_cells" / f"{lbr.key}.json").write_text(json.dumps({"training": [{"seconds": 7.0}]}))
    again = progress.lbr_cells("smoke", domains=("medical",), seeds=(0,)).set_index("model")
    assert again.done.sum() == 1 and again.loc[stages.LBR, "done"] and again.loc[stages.LBR, "seconds"] == 7.0


def test_the_summary_counts_a_shared_stage1_run_once():
    stage1 = {"stage": 1, "seconds": 3600.0, "steps": 150, "final_loss": 1.2}
    stage2 = {"stage": 2, "seconds": 1800.0, "steps": 400, "final_loss": 0.1}
    table = pd.DataFrame([
        {"chapter": "5a", "domain": "medical", "seed": 0, "done": True, "training": [stage1, stage2]},
        {"chapter": "5a", "domain": "medical", "seed": 0, "done": True, "training": [stage1]},
        {"chapter": "5a", "domain": "medical", "seed": 0, "done": False, "training": []},
        {"chapter": "5a", "domain": "code", "seed": 0, "done": True, "training": [stage1]}])
    got = progress.summary(table)
    assert got.loc[("5a", "medical", 0)].tolist() == [2, 3, 1.5] and got.loc[("5a", "code", 0)].tolist() == [1, 1, 1.0]


def test_chapters_3_and_6_are_listed_by_the_keys_their_runs_use(tmp_path, monkeypatch):
    from lbr_utils.studies import ch03_contrastive as contrastive

    monkeypatch.setenv("LBR_CELLS", str(tmp_path))
    table = progress.other_cells("smoke", seeds=(0,))
    names = list(contrastive.models(lbr_profile(get_profile("smoke")), 0))
    assert table[table.chapter == "3"].model.tolist() == names and table.key.is_unique and not table.done.any()
    assert table[table.chapter == "6"].model.tolist() == ["quality", "timing"] and not list(tmp_path.iterdir())

    base = table[table.model == names[2]].iloc[0]  # the base recipe, stored as its run would store it
    (tmp_path / "ch03_cells").mkdir()
    (tmp_path / "ch03_cells" / f"{base.key}.json").write_text(json.dumps({"training": [{"seconds": 5.0}]}))
    again = progress.other_cells("smoke", seeds=(0,)).set_index("model")
    assert again.done.sum() == 1 and again.loc[names[2], "seconds"] == 5.0
