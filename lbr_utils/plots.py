"""The book's matplotlib figures, each drawn from a results table (never from typed numbers)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def grouped_bars(table: pd.DataFrame, metric: str, title: str, ax=None, percent: bool = True):
    """One group of bars per task, one bar per model, for ``metric`` of a tidy results table."""
    sub = table[table.metric == metric].pivot_table(index="task", columns="model", values="score", sort=False)
    if sub.empty:
        raise ValueError(f"no rows with metric {metric!r} in the table")
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    width = 0.8 / sub.shape[1]
    x = np.arange(sub.shape[0])
    scale = 100 if percent else 1
    for i, model in enumerate(sub.columns):
        bars = ax.bar(x + i * width, sub[model].to_numpy() * scale, width, label=model)
        ax.bar_label(bars, fmt="%.0f" if percent else "%.2f", fontsize=7, padding=1)
    ax.set_xticks(x + width * (sub.shape[1] - 1) / 2, sub.index)
    ax.set_ylabel(f"{metric}{' (x100)' if percent else ''}")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def baseline_figure(table: pd.DataFrame):
    """Retrieval NDCG@10 per domain and STS Spearman per set, side by side."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 3]})
    grouped_bars(table[table.kind == "retrieval"], "NDCG@10", "Domain retrieval", ax=left)
    grouped_bars(table[table.kind == "sts"], "Spearman", "STS (cosine vs. human scores)", ax=right)
    fig.tight_layout()
    return fig
