"""Our numbers beside the paper's: seed summaries and a verdict rule written down once.

The paper's numbers live in ``paper_lbr.json`` (quoted from the paper, never computed); ours come
from results files. A claim of the paper is a direction ("A beats B"); we judge it on per-seed
paired differences, so a claim is *reproduced* only if every seed agrees with it.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Sequence

import pandas as pd


def paper_numbers() -> dict:
    """The LBR paper's tables, as quoted in ``lbr_utils/paper_lbr.json``."""
    return json.loads(resources.files("lbr_utils").joinpath("paper_lbr.json").read_text())


def mean_std(table: pd.DataFrame, keys: Sequence[str], value: str = "score", scale: float = 100.0) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; NaN for one seed) and seed count of ``value`` per ``keys``."""
    grouped = table.groupby(list(keys), sort=False)[value]
    out = grouped.agg(["mean", "std", "count"]).rename(columns={"count": "seeds"})
    out[["mean", "std"]] *= scale
    return out


def fmt(mean: float, std: float, digits: int = 1) -> str:
    """``"34.2 ± 1.3"``; a single seed has no spread and prints as the mean alone."""
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def verdict(differences: Sequence[float], paper_difference: float) -> str:
    """Judge the paper's claim ``A - B = paper_difference`` from our per-seed differences ``A - B``.

    reproduced: every seed has the paper's sign; partly: the mean has it but not every seed;
    not reproduced: the mean has the opposite sign (or is exactly zero).
    """
    diffs = list(differences)
    if not diffs:
        raise ValueError("no per-seed differences to judge")
    sign = 1 if paper_difference > 0 else -1
    if all(d * sign > 0 for d in diffs):
        return "reproduced"
    if sum(diffs) * sign > 0:
        return "partly"
    return "not reproduced"


def paired_differences(table: pd.DataFrame, a: str, b: str, column: str = "model", value: str = "score",
                       by: Sequence[str] = ("seed",)) -> list[float]:
    """Per-seed ``value(a) - value(b)`` from a long table (one row per model and seed)."""
    wide = table.pivot_table(index=list(by), columns=column, values=value)
    return (wide[a] - wide[b]).dropna().tolist()
