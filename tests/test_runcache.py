"""Code fingerprints follow the imports: an edit marks stale exactly the chapters whose code it touches."""

import json
import shutil

import pytest

from lbr_utils.cli.reproduce import notebooks, stale_notebooks, stamp_outputs
from lbr_utils.runcache import (PACKAGE_ROOT, cache_key, cached_json, chapter_modules, code_fingerprint,
                                module_closure, run_cache_dir)

CHAPTERS = [nb.stem for nb in notebooks()]


@pytest.fixture()
def copies(tmp_path):
    """A copy of the package and of the notebooks (stamped as freshly executed), to edit freely."""
    root = tmp_path / "lbr_utils"
    shutil.copytree(PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "notebooks").mkdir()
    for nb in notebooks():
        path = tmp_path / "notebooks" / nb.name
        path.write_text(nb.read_text())
    return root, tmp_path / "notebooks"


def _stale_after_editing(module_path: str, root, notebook_dir) -> set[str]:
    import lbr_utils.cli.reproduce as reproduce

    for nb in notebook_dir.glob("*.ipynb"):
        stamp_outputs(nb, "smoke")
        data = json.loads(nb.read_text())
        data["metadata"]["lbr"]["code"] = reproduce.chapter_fingerprint(nb, root)  # stamped against the copy
        nb.write_text(json.dumps(data))
    assert stale_notebooks(notebook_dir, root) == []
    with (root / module_path).open("a") as f:
        f.write("\n# an edit\n")
    return {name.removesuffix(".ipynb") for name, _ in stale_notebooks(notebook_dir, root)}


@pytest.mark.parametrize("module_path, expected", [
    ("compress.py", {"ch06_compression"}),
    ("invert.py", {"ch07_inversion"}),
    ("synth.py", {"ch04_synthetic"}),
    ("lbr.py", {"ch03_contrastive", "ch04_synthetic", "ch05a_lbr_stages", "ch05b_lbr_ablations", "ch06_compression",
                "ch07_inversion"}),
    ("studies/ch02_pooling.py", {"ch02_pooling"}),
    ("studies/ch05b_lbr_ablations.py", {"ch05b_lbr_ablations"}),
    ("studies/ch05a_lbr_stages.py", {"ch05a_lbr_stages", "ch05b_lbr_ablations"}),  # 5b runs 5a's arms by name
    # chapters 3 and 4 read its MiniLM+CL (and 4 its BM25)
    ("studies/_lbr_cells.py", {"ch03_contrastive", "ch04_synthetic", "ch05a_lbr_stages", "ch05b_lbr_ablations"}),
    ("studies/_contrastive_cells.py", {"ch03_contrastive", "ch04_synthetic"}),  # ch04 trains with ch03's base recipe
])
def test_an_edit_marks_exactly_the_chapters_that_import_it(copies, module_path, expected):
    root, notebook_dir = copies
    assert _stale_after_editing(module_path, root, notebook_dir) == expected


@pytest.mark.parametrize("module_path", ["masks.py", "data/records.py", "plots.py", "stats.py", "geometry.py"])
def test_every_chapter_importing_a_module_goes_stale_and_no_other(copies, module_path):
    """The general rule, for modules many chapters share: stale == the chapters whose closure holds it."""
    root, notebook_dir = copies
    module = "lbr_utils." + module_path.removesuffix(".py").replace("/", ".")
    users = {nb.stem for nb in notebook_dir.glob("*.ipynb") if module in chapter_modules(nb, root)}
    assert users and (users != set(CHAPTERS) or module_path != "geometry.py")  # geometry: some chapters, not all
    assert _stale_after_editing(module_path, root, notebook_dir) == users


def test_the_closure_follows_relative_and_lazy_imports():
    closure = module_closure(["lbr_utils.studies.ch07_inversion"])
    assert {"lbr_utils.invert", "lbr_utils.lbr", "lbr_utils.masks", "lbr_utils.data.records"} <= closure
    assert "lbr_utils.compress" not in closure and "lbr_utils.export" not in closure  # export is lazy in __init__


def test_cache_keys_ignore_presentation_code_and_follow_the_rest(tmp_path):
    root = tmp_path / "lbr_utils"
    shutil.copytree(PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_fingerprint("lbr_utils.studies._lbr_cells", root=root)
    (root / "stats.py").write_text((root / "stats.py").read_text() + "\n# a new verdict rule\n")
    assert code_fingerprint("lbr_utils.studies._lbr_cells", root=root) == before  # judging is not computing
    (root / "train.py").write_text((root / "train.py").read_text() + "\n# a new optimiser\n")
    assert code_fingerprint("lbr_utils.studies._lbr_cells", root=root) != before
    assert cache_key("abc", seed=0) != cache_key("abd", seed=0) != cache_key("abc", seed=1)


def test_cached_json_computes_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LBR_RUN_CACHE", str(tmp_path))
    calls = []
    first = cached_json("cells", "k", lambda: calls.append(1) or {"x": 1})
    again = cached_json("cells", "k", lambda: calls.append(1) or {"x": 2})
    assert first == again == {"x": 1} and calls == [1]


def test_cells_live_in_lbr_cells_apart_from_checkpoints(tmp_path, monkeypatch):
    """A study's scored cells go where ``LBR_CELLS`` points (the committed ``results/<profile>/cells``),
    and one found there is read back without computing: a session resumes another's study."""
    monkeypatch.setenv("LBR_RUN_CACHE", str(tmp_path / "run"))
    monkeypatch.setenv("LBR_CELLS", str(tmp_path / "cells"))
    cached_json("lbr_cells", "k", lambda: {"x": 1})
    assert (tmp_path / "cells" / "lbr_cells" / "k.json").exists() and not (tmp_path / "run").exists()
    assert run_cache_dir() == tmp_path / "run"
    assert cached_json("lbr_cells", "k", lambda: pytest.fail("recomputed a committed cell")) == {"x": 1}


def test_a_profile_edit_keeps_trained_models_but_marks_every_chapter_stale(copies):
    """Profile sizes reach a cached model through the values in its key, not through code: adding or
    changing one chapter's sizes must not throw away another's trained cells; the rendered chapters,
    whose numbers those sizes made, do go stale."""
    root, notebook_dir = copies
    before = code_fingerprint("lbr_utils.studies._lbr_cells", root=root), code_fingerprint("lbr_utils.lbr", root=root)
    assert _stale_after_editing("profiles.py", root, notebook_dir) == set(CHAPTERS)
    assert (code_fingerprint("lbr_utils.studies._lbr_cells", root=root), code_fingerprint("lbr_utils.lbr", root=root)) == before
    (root / "lbr.py").open("a").write("\n# a code edit\n")
    assert code_fingerprint("lbr_utils.studies._lbr_cells", root=root) != before[0]


@pytest.mark.parametrize("cells, chapter", [("_contrastive_cells", "ch03_contrastive"), ("_synthetic_cells", "ch04_synthetic"),
                                            ("_compression_cells", "ch06_compression"), ("_inversion_cells", "ch07_inversion"),
                                            ("_lbr_cells", "ch05a_lbr_stages")])
def test_a_chapters_claims_and_prose_are_outside_its_cells_keys(cells, chapter):
    """The cells (hours of training) are keyed on their own module's closure: the chapter's study
    module, where claims and page helpers change most, is not in it."""
    closure = module_closure([f"lbr_utils.studies.{cells}"])
    assert f"lbr_utils.studies.{chapter}" not in closure and f"lbr_utils.studies.{cells}" in closure


def test_retaking_chapter_6s_timing_keeps_its_trained_compressors():
    """A timing is retaken on an idle machine in minutes; the compressors took hours: the quality
    cells' key must not cover the timing code."""
    quality = module_closure(["lbr_utils.studies._compression_cells"])
    assert not {"lbr_utils.costs", "lbr_utils.studies._timing_cells"} & quality
    assert "lbr_utils.costs" in module_closure(["lbr_utils.studies._timing_cells"])
