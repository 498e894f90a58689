"""The book as a reader sees it: every rendered chapter's HTML page has its figures, its provenance
line, an equation, the package's own code, folded imports and solutions, and no error, stderr
output or papermill cell (parsed from the built pages); and no rendered page is older than its code."""

import nbformat
import pytest
from bs4 import BeautifulSoup

from lbr_utils.cli.reproduce import build_book, notebooks, stale_notebooks


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
    assert page.select(".math"), "no equation"
    assert any("def " in c.get_text() for c in page.select(".cell_output .highlight")), "no package code shown"
    assert any("import" in c.get_text() for c in page.select(".tag_hide-input")), "the imports are not folded"
    assert not page.select(".output.stderr, .output.error, .output.traceback"), "error or stderr output"
    assert not page.select(".tag_injected-parameters"), "papermill's parameters shown"


def test_no_rendered_chapter_is_older_than_its_cells_or_code():
    """A page's numbers come from the code as it is: an edit to a chapter or to the package code it
    imports must be followed by a re-render (``reproduce --in-place``; ``reuse_results=True`` where
    only presentation changed). A chapter whose cpu run is pending has no outputs to go stale."""
    rendered = {nb.name for nb in notebooks() if _rendered(nb)}
    assert [(name, why) for name, why in stale_notebooks() if name in rendered] == []
