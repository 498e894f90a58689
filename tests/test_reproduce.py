"""The reproduce command's bookkeeping: stale-output detection and parameter parsing."""

import nbformat

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
