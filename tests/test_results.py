import json

import pytest

from lbr_utils.results import load_results, provenance_line, results_dir, save_results


def test_results_round_trip_with_provenance(tmp_path):
    path = save_results("exp", "smoke", {"ndcg": 0.5}, {"k": 1}, [0, 1], 12.345, root=tmp_path)
    assert path == tmp_path / "smoke" / "exp.json"
    record = load_results("exp", "smoke", root=tmp_path)
    assert record["metrics"] == {"ndcg": 0.5} and record["config"] == {"k": 1}
    p = record["provenance"]
    assert p["profile"] == "smoke" and p["seeds"] == [0, 1] and p["wall_time_s"] == 12.35
    assert len(p["git_commit"].split("+")[0]) in (40, 7) and p["peak_memory_mib"] > 0
    assert p["versions"]["torch"].startswith("2.")
    assert "profile `smoke`" in provenance_line(record) and "earlier runs" not in provenance_line(record)
    assembled = record | {"config": {"compute_seconds": 7200.0}}  # read from cells that parts trained
    assert "wall time 12 s (it read cells that took 2.0 h to compute in earlier runs)" in provenance_line(assembled)
    dirty = record | {"provenance": p | {"git_commit": "0123456789abcdef+dirty"}}
    assert "commit 0123456789ab+dirty," in provenance_line(dirty)  # uncommitted code is not hidden
    assert json.loads(path.read_text())["experiment"] == "exp"


def test_results_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LBR_RESULTS_DIR", str(tmp_path))
    assert results_dir("cpu") == tmp_path / "cpu"


def test_missing_results_say_which_notebook_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the notebook"):
        load_results("nothing", "cpu", root=tmp_path)


def test_tables_are_stored_as_rows_and_read_back_as_frames(tmp_path):
    import pandas as pd

    from lbr_utils.results import load_tables

    table = pd.DataFrame({"model": ["a", "b"], "score": [0.5, 0.25]})
    save_results("demo", "smoke", {"retrieval": table, "note": [{"x": 1}]}, {}, [0], 1.0, root=tmp_path)
    record = load_results("demo", "smoke", root=tmp_path)
    assert record["metrics"]["retrieval"] == [{"model": "a", "score": 0.5}, {"model": "b", "score": 0.25}]
    assert load_tables(record)["retrieval"].equals(table)


def test_a_page_says_whether_it_shows_the_committed_results_and_how_to_recompute(tmp_path, monkeypatch):
    from lbr_utils.results import reuse_note, save_results

    monkeypatch.setenv("LBR_RESULTS_DIR", str(tmp_path))
    assert reuse_note("ch03_contrastive", "cpu", False).startswith("Computed in this run")
    note = reuse_note("ch03_contrastive", "cpu", True)
    assert "reuse_results = False" in note and "--only ch03_contrastive.ipynb" in note and "min" not in note
    save_results("notebook_costs", "cpu", [{"notebook": "ch03_contrastive.ipynb", "wall_time_s": 1800.0}], {}, None, 1.0)
    assert "about 30 min on two CPU cores" in reuse_note("ch03_contrastive", "cpu", True)
    # a notebook run that read cells computed in earlier runs: the cells' training time is the cost
    save_results("ch03_contrastive", "cpu", {"retrieval": []}, {"compute_seconds": 3 * 3600.0}, [0], 1.0)
    note = reuse_note("ch03_contrastive", "cpu", True)
    assert "about 3.0 h" in note and "in parts" in note and "30 min" not in note
    # cells that record no training time: the chapter's runs, its parts included, are what it cost
    save_results("notebook_costs", "cpu", [{"notebook": "ch03_contrastive.ipynb", "wall_time_s": 60.0},
                                           {"notebook": "ch03_contrastive.ipynb", "wall_time_s": 2 * 3600.0,
                                            "parameters": {"seeds": [0]}}], {}, None, 1.0)
    save_results("ch03_contrastive", "cpu", {"retrieval": []}, {}, [0], 1.0)
    assert "about 2.0 h" in reuse_note("ch03_contrastive", "cpu", True)
    assert "took 2.0 h to compute" in provenance_line(load_results("ch03_contrastive", "cpu"))
