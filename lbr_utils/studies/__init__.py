"""The book's experiments, one module per chapter.

A chapter has one name, used three times: ``notebooks/NAME.ipynb`` tells the story,
``lbr_utils.studies.NAME`` computes its numbers, ``results/<profile>/NAME.json`` holds them. Every
study module offers the same three things:

* ``run(profile, **params)``: compute the chapter's numbers and write its results file;
* ``claims(records)``: the claims its numbers judge, as titled tables (a table, a paragraph, or a
  (paragraph, table) pair), from the loaded results records (its own, and any other chapter's or
  benchmark's it compares with); ``{}`` when its own record is missing. A judged claim family is
  given raw (:func:`lbr_utils.stats.claim_family`'s columns): the report formats it as the pages do
  and counts verdicts on the numbers, not on their text. Survey claims go under the title
  ``"survey"``, which the report gathers into one table;
* ``TITLE``: what the report calls it.

Which package modules a chapter's numbers depend on is not declared by hand: it is read from the
imports of the study module and the notebook (:func:`lbr_utils.runcache.chapter_modules`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pandas as pd

CHAPTERS = ("ch01_baselines", "ch02_pooling", "ch03_contrastive", "ch04_synthetic", "ch05a_lbr_stages",
            "ch05b_lbr_ablations", "ch06_compression", "ch07_inversion")


def study(name: str) -> ModuleType:
    """The study module of chapter ``name`` (e.g. ``"ch03_contrastive"``)."""
    if name not in CHAPTERS:
        raise ValueError(f"unknown chapter {name!r}; choose one of {', '.join(CHAPTERS)}")
    return importlib.import_module(f"{__name__}.{name}")


def run_or_load(name: str, profile: str, reuse: bool = False, **params) -> dict:
    """Chapter ``name``'s results record: recomputed with ``params`` (progress bars and library chatter
    kept out of the rendered page), or with ``reuse`` read from ``results/<profile>/NAME.json``."""
    from IPython.utils.capture import capture_output

    from ..results import load_results

    if not reuse:
        with capture_output():
            study(name).run(profile, **params)
    try:
        return load_results(name, profile)
    except FileNotFoundError as missing:
        raise FileNotFoundError(f"there are no committed `{profile}` results for {name}: set reuse_results = False "
                                "in the parameters cell to compute them") from missing


def tables(name: str, profile: str, reuse: bool = False, **params) -> tuple[dict, dict[str, pd.DataFrame]]:
    """:func:`run_or_load`, plus the record's tables as DataFrames (most chapters want both)."""
    from ..results import load_tables

    record = run_or_load(name, profile, reuse, **params)
    return record, load_tables(record)
