"""The reproduce command's bookkeeping: stale-output detection and parameter parsing."""

import json

import nbformat

from lbr_utils.cli import reproduce
from lbr_utils.cli.reproduce import _literal, source_hash, stale_notebooks, stamp_outputs


def _notebook(path, code: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell(code)])
    nbformat.write(nb, path)


def test_a_notebook_is_stale_until_stamped_and_again_when_its_source_changes(tmp_path):
    path = tmp_path / "ch01_demo.ipynb"
    _notebook(path, "x = 1")
    assert stale_notebooks(tmp_path) == [("ch01_demo.ipynb", "no record of a reproduce run")]
    stamp_outputs(path, "smoke")
    assert stale_notebooks(tmp_path) == []
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_code_cell("profile = 'cpu'", metadata={"tags": ["injected-parameters"]}))
    nbformat.write(nb, path)
    assert stale_notebooks(tmp_path) == []  # papermill's injected cell is not a source change
    nb.cells[-1].source = "x = 2"
    nbformat.write(nb, path)
    [(name, why)] = stale_notebooks(tmp_path)
    assert name == "ch01_demo.ipynb" and "cells changed" in why
    assert source_hash(path) != nbformat.read(path, as_version=4).metadata["lbr"]["source_hash"]


def test_parameters_are_python_literals_or_strings():
    assert _literal("True") is True and _literal("3") == 3 and _literal("medical,code") == "medical,code"


def test_a_stamped_page_hides_papermills_cell_and_says_when_it_is_not_the_studys_run(tmp_path):
    """The injected parameters are kept for the record but removed from the page; a page executed
    in another profile than ``cpu`` says so at its top, and the note is not a source change."""
    path = tmp_path / "ch01_demo.ipynb"
    _notebook(path, "x = 1")
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_code_cell("# Parameters\nprofile = 'smoke'\nreuse_results = False\n",
                                                 metadata={"tags": ["injected-parameters"]}))
    nbformat.write(nb, path)
    stamp_outputs(path, "smoke")
    cells = nbformat.read(path, as_version=4).cells
    assert "remove-cell" in cells[2].metadata["tags"] and "`smoke` run" in cells[1].source
    assert "profile = 'smoke'" in cells[2].source and "reuse_results" not in cells[2].source  # a rerun reuses
    assert stale_notebooks(tmp_path) == []
    stamp_outputs(path, "cpu")
    assert not any("`smoke` run" in c.source for c in nbformat.read(path, as_version=4).cells)


def test_every_chapter_opens_with_its_idea_and_reuses_the_committed_results_by_default():
    """A reader's "Run all" shows the committed results (reuse_results = True), the install cell for
    Colab is folded, and so is the import cell after the parameters."""
    from lbr_utils.cli.reproduce import notebooks

    installs = set()
    for path in notebooks():
        cells = nbformat.read(path, as_version=4).cells
        assert cells[0].cell_type == "markdown", path.name
        p = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        assert "reuse_results = True" in cells[p].source, path.name
        assert not any("reuse_results = False" in c.source for c in cells[p + 1:]), path.name  # no override
        # an in-place render keeps papermill's injected cell (hidden) right after the parameters cell
        after = next(c for c in cells[p + 1:] if "injected-parameters" not in c.metadata.get("tags", []))
        assert "hide-input" in after.metadata.get("tags", []) and "import" in after.source, path.name
        install = [c for c in cells if 'find_spec("lbr_utils")' in c.source]
        assert len(install) == 1 and "hide-cell" in install[0].metadata["tags"], path.name
        installs.add(install[0].source)
    # one install cell, the same in every chapter; it keeps the kernel's own notebook stack
    assert len(installs) == 1 and '"ipykernel", "papermill", "jupyter-book"' in installs.pop()


def test_the_kernels_sockets_stay_out_of_the_notebook_folder(tmp_path):
    """The kernel talks over IPC sockets; they live in a temporary folder, so a run that is killed
    leaves nothing beside the chapters (the check runs inside the kernel, while they exist)."""
    from lbr_utils.cli.reproduce import execute

    path = tmp_path / "ch01_demo.ipynb"
    _notebook(path, "import os\nassert not [f for f in os.listdir('.') if f.startswith('kernel-ipc')], os.listdir('.')")
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, path)
    execute(path, "smoke", tmp_path / "out" / path.name)
    assert not [f for f in (tmp_path / "out").iterdir() if f.name.startswith("kernel-ipc")]


def test_a_failing_notebook_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    """The newcomer's command runs every chapter even when one fails, then prints one summary line
    per failure and exits non-zero."""
    from lbr_utils.cli import reproduce

    monkeypatch.setenv("LBR_RESULTS_DIR", str(tmp_path))
    chapters = [tmp_path / "ch01_a.ipynb", tmp_path / "ch02_b.ipynb"]
    monkeypatch.setattr(reproduce, "notebooks", lambda directory=None: chapters)

    def execute(notebook, profile, output, parameters=None):
        if notebook.name == "ch01_a.ipynb":
            raise ValueError("no such model: 'nope'\nTraceback ...")
        return {"notebook": notebook.name, "wall_time_s": 1.0, "peak_memory_mib": 100.0}

    monkeypatch.setattr(reproduce, "execute", execute)
    assert reproduce.main(["--profile", "smoke", "--no-book", "--output-dir", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "ch02_b.ipynb                 ok" in out and "1 of 2 notebook(s) executed" in out
    assert "failed: ch01_a.ipynb: ValueError: no such model: 'nope'" in out and "Traceback" not in out


def test_a_chapters_parts_keep_their_own_cost_rows():
    """A split chapter's parts (one seed each) and the run that assembles it are separate rows; a
    rerun of one part replaces only that part's row."""
    from lbr_utils.results import load_results

    part = {"notebook": "ch04.ipynb", "wall_time_s": 2700.0, "peak_memory_mib": 5000.0, "threads": 1}
    reproduce.save_notebook_costs("cpu", [part | {"parameters": {"seeds": [0]}},
                                          part | {"parameters": {"seeds": [1]}}], 1.0)
    reproduce.save_notebook_costs("cpu", [part | {"parameters": {"seeds": [1]}, "wall_time_s": 2000.0},
                                          part | {"parameters": {}, "wall_time_s": 60.0}], 1.0)
    rows = load_results("notebook_costs", "cpu")["metrics"]
    assert sorted((json.dumps(r["parameters"]), r["wall_time_s"]) for r in rows) == \
        [("{\"seeds\": [0]}", 2700.0), ("{\"seeds\": [1]}", 2000.0), ("{}", 60.0)]


def test_a_part_that_read_earlier_cells_is_noted_as_resumed():
    """A part whose results file (written during the run) records 2 h of cell compute but which took 10
    min read cells an earlier run computed; one that took about as long as its cells did computed them;
    a results file older than the run, or none, says nothing about it."""
    import datetime as dt

    from lbr_utils.results import save_results

    began = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=5)
    assert reproduce.resumed_note("ch04_synthetic", "cpu", 600.0, began) is None  # no results file
    save_results("ch04_synthetic", "cpu", {"retrieval": []}, {"compute_seconds": 7200.0}, [0], 600.0)
    assert reproduce.resumed_note("ch04_synthetic", "cpu", 600.0, began) == \
        "resumed: its cells took 2.0 h to compute, in this and earlier runs"
    assert reproduce.resumed_note("ch04_synthetic", "cpu", 7000.0, began) is None
    assert reproduce.resumed_note("ch04_synthetic", "cpu", 600.0, began + dt.timedelta(hours=1)) is None
