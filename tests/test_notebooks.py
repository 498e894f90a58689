"""Every notebook in notebooks/ runs in the smoke profile, and the book builds without warnings.

New notebooks are picked up automatically; their wall time is printed so a slow chapter shows.
"""

import json
import pytest

from lbr_utils.reproduce import build_book, execute, notebooks

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


@pytest.mark.notebook
def test_the_book_builds_offline_without_warnings(tmp_path):
    out = build_book(path_output=tmp_path, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "_build" / "html" / "notebooks" / "01_setup_data_baselines.html").exists()
