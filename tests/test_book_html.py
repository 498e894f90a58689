"""The book as a reader sees it: every rendered chapter's HTML page has its figures, its provenance
line, a folded solution, and no error, stderr output or papermill cell (parsed from the built pages)."""

import nbformat
import pytest
from bs4 import BeautifulSoup

from lbr_utils.cli.reproduce import build_book, notebooks


def _rendered(path) -> bool:
    return any(c.get("outputs") for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def _figures(path) -> int:
    """Images among the notebook's outputs that the page should show (not in a removed cell)."""
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
             and not {"remove-cell", "remove-output"} & set(c.metadata.get("tags", []))]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.outputs)


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    built = build_book(path_output=out, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out / "_build" / "html" / "notebooks"


@pytest.mark.parametrize("notebook", notebooks(), ids=lambda p: p.stem)
def test_a_chapter_page_shows_what_a_reader_needs(html, notebook):
    if not _rendered(notebook):
        pytest.skip(f"{notebook.name} has no committed outputs yet (its cpu run is pending)")
    page = BeautifulSoup((html / f"{notebook.stem}.html").read_text(), "html.parser").find("main")
    shown, figures = len(page.select(".cell_output img")), _figures(notebook)
    assert figures and shown >= figures, f"{shown} of the notebook's {figures} figures on the page"
    assert "Numbers from results/" in page.get_text(), "no provenance line"
    solutions = [c for c in page.select(".tag_hide-cell") if "assert" in c.get_text()]
    assert solutions, "no folded solution"
    assert not page.select(".output.stderr, .output.error, .output.traceback"), "error or stderr output"
    assert not page.select(".tag_injected-parameters"), "papermill's parameters shown"
