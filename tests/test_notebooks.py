"""Every notebook in notebooks/ runs in the smoke profile, and the book builds without warnings.

New notebooks are picked up automatically; their wall time is printed so a slow chapter shows.
"""

import json
import pytest

from lbr_utils.cli.reproduce import build_book, execute, notebooks

NOTEBOOKS = notebooks()


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_in_smoke(notebook, tmp_path, capsys):
    cost = execute(notebook, "smoke", tmp_path / notebook.name)
    with capsys.disabled():
        print(f"\n[notebook] {notebook.name}: {cost['wall_time_s']:.1f} s, "
              f"peak memory {cost['peak_memory_mib']:.0f} MiB")
    cells = json.loads((tmp_path / notebook.name).read_text())["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_has_a_parameters_cell_with_a_profile(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and "profile" in "".join(params[0]["source"])


def _without_timings(value):
    """``value`` with every wall-time field dropped: the one part of a results file a rerun may change."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "time" not in k and "second" not in k}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


@pytest.mark.notebook
def test_a_training_notebook_rerun_with_the_same_seed_gives_the_same_metrics(tmp_path, monkeypatch):
    """Chapter 3 trains seven embedders; run twice in smoke, each from an empty run cache (else the
    second run would read the first's cells), every score, loss and geometry number agrees."""
    notebook = next(nb for nb in NOTEBOOKS if nb.stem == "ch03_contrastive")
    metrics = []
    for run in ("first", "second"):
        monkeypatch.setenv("LBR_RESULTS_DIR", str(tmp_path / run))
        monkeypatch.setenv("LBR_RUN_CACHE", str(tmp_path / run / "cache"))
        execute(notebook, "smoke", tmp_path / f"{run}.ipynb")
        metrics.append(json.loads((tmp_path / run / "smoke" / "ch03_contrastive.json").read_text())["metrics"])
    assert metrics[0]["retrieval"] and _without_timings(metrics[0]) == _without_timings(metrics[1])


@pytest.mark.notebook
def test_the_book_builds_offline_without_warnings(tmp_path):
    out = build_book(path_output=tmp_path, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "_build" / "html" / "notebooks" / "ch01_baselines.html").exists()
