"""The book's matplotlib figures, each drawn from a results table (never from typed numbers)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .stats import NOT_CONVERGED, each_run_once


# One colour per model or method, in every figure of the book (tab10's hues, fixed by name).
PALETTE = {
    "BM25": "#7f7f7f", "MiniLM": "#17becf", "MiniLM+CL": "#1f77b4",
    "LLM": "#bcbd22", "LLM+GL": "#ff7f0e", "LLM+IB-GL": "#2ca02c",
    "LLM+CL": "#d62728", "LLM+CL (last token)": "#9467bd", "LLM+CL (mean)": "#8c564b",
    "LLM+CL (GL+CL pairs)": "#393b79",
    "LLM+GL+CL": "#e377c2", "LLM+IB-GL+CL": "#006d2c",
    "GL": "#ff7f0e", "IB-GL": "#2ca02c", "CL only": "#d62728",
    # The same models under their names in chapters 3, 4 and 7.
    "all-MiniLM-L6-v2": "#17becf", "SmolLM2": "#bcbd22", "smollm2": "#bcbd22", "before training": "#bcbd22",
    # Chapter 4's training sets and chapter 7's attacks.
    "human": "#3182bd", "synthetic": "#e6550d", "synthetic (unfiltered)": "#fdae6b", "mix (equal pairs)": "#756bb1",
    "synthetic (no consistency filter)": "#8c2d04",
    "human + synthetic": "#31a354",
    "bag-of-words probe": "#5254a3", "adaptive probe": "#9c9ede", "nearest neighbour": "#8c6d31", "decoder": "#843c39",
    # Chapter 3's recipes: the base recipe is chapter 5's mean-pooled CL, so it keeps that colour.
    "in-batch, t=0.05 (base)": "#8c564b", "+ hard negatives (filtered)": "#637939",
    "+ hard negatives, no false-negative guard": "#b5cf6b", "t=0.02": "#7b4173", "t=0.1": "#ce6dbd",
    "Matryoshka": "#e7ba52", "full fine-tuning": "#d6616b",
    # Chapter 6's readings of a passage.
    "compressed": "#6b6ecf", "truncated": "#bd9e39", "full passage": "#525252", "closed book": "#969696",
    # Chapter 5b: the causal models are chapter 5a's (same colour), bidirectional ones their light twin;
    # the ratio sweep viridis' hues, far enough apart to tell in a legend (r=8 is IB-GL itself); the two
    # stage-1 styles.
    "GL+CL": "#e377c2", "IB-GL+CL": "#006d2c", "GL+CL (bidirectional)": "#f7b6d2",
    "IB-GL+CL (bidirectional)": "#98df8a",
    "r=4": "#c2a000", "r=8": "#2ca02c", "r=16": "#21918c", "r=32": "#3b528b", "r=64": "#440154",
    "Standard SFT": "#ff7f0e", "IB-GL (SFT)": "#2ca02c", "Standard PT": "#a55194", "IB-GL (PT)": "#74c476",
}
# What a name missing from PALETTE gets: tab20's hues that no named model uses.
_SPARE = [c for c in ("#aec7e8", "#ffbb78", "#ff9896", "#c5b0d5", "#c49c94", "#c7c7c7", "#dbdb8d", "#9edae5",
                      "#98df8a", "#f7b6d2") if c not in PALETTE.values()]
# A text's role in a worked example (the positive, a hard negative, the rest) and a claim's verdict are
# not models: they get hues no model uses, so no figure reads as another's.
ROLES = {"positive": "#4daf4a", "hard negative": "#a50f15", "easy negative": "#d9d9d9"}
VERDICT_COLOURS = {"reproduced": "#1b9e77", "contradicted": "#7a0177", "inconclusive": "#737373"}
NOT_JUDGED = "not judged"  # the start of a verdict left out (by the convergence gate, stats.unconverged, or another reason)


def colour_of(name: str) -> str:
    """The book's colour for a model: its own, else that of the longest name it starts with (so
    "LLM+CL @ equal compute" is LLM+CL's red), else a spare hue fixed by the name (a reader's own model,
    e.g. at the ``gpu`` profile), never one a named model wears."""
    import zlib

    if name in PALETTE:
        return PALETTE[name]
    prefixes = [k for k in PALETTE if name.startswith(k)]
    return PALETTE[max(prefixes, key=len)] if prefixes else _SPARE[zlib.crc32(name.encode()) % len(_SPARE)]


def style(ax, xlabel: str | None = None, ylabel: str | None = None, title: str | None = None,
          legend: bool = True, legend_size: int = 8):
    """The book's axis style in one place: labels, a frameless legend (when something is labelled)
    and no top/right spines. Returns ``ax`` so a cell can end with it."""
    for setter, text in ((ax.set_xlabel, xlabel), (ax.set_ylabel, ylabel), (ax.set_title, title)):
        if text is not None:
            setter(text)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend_size, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def grouped_bars(table: pd.DataFrame, metric: str, title: str, ax=None, percent: bool = True):
    """One group of bars per task, one bar per model (in the book's colour for it, so two panels of
    one figure agree), for ``metric`` of a tidy results table."""
    sub = table[table.metric == metric].pivot_table(index="task", columns="model", values="score", sort=False)
    if sub.empty:
        raise ValueError(f"no rows with metric {metric!r} in the table")
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    width = 0.8 / sub.shape[1]
    x = np.arange(sub.shape[0])
    scale = 100 if percent else 1
    for i, model in enumerate(sub.columns):
        bars = ax.bar(x + i * width, sub[model].to_numpy() * scale, width, label=model, color=colour_of(model))
        ax.bar_label(bars, fmt="%.0f" if percent else "%.2f", fontsize=7, padding=1)
    ax.set_xticks(x + width * (sub.shape[1] - 1) / 2, sub.index)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.2)  # head room: the legend never covers a bar's label
    return style(ax, ylabel=f"{metric}{' (x100)' if percent else ''}", title=title)


def baseline_figure(table: pd.DataFrame):
    """Retrieval NDCG@10 per domain and STS Spearman per set, side by side."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 3]})
    grouped_bars(table[table.kind == "retrieval"], "NDCG@10", "Domain retrieval", ax=left)
    grouped_bars(table[table.kind == "sts"], "Spearman", "STS (cosine vs. human scores)", ax=right)
    fig.tight_layout()
    return fig


def heatmap(matrix: pd.DataFrame, title: str, percent: bool = True, ax=None, unit: str | None = None,
            xlabel: str | None = None, ylabel: str | None = None):
    """A labelled heatmap (rows x columns) with each cell's value written in it; ``unit`` labels the
    colour bar (default: "x100" or "value"), ``xlabel`` / ``ylabel`` what the columns and rows are."""
    values = matrix.to_numpy(dtype=float) * (100 if percent else 1)
    ax = ax or plt.subplots(figsize=(1.1 * matrix.shape[1] + 3, 0.42 * matrix.shape[0] + 1.2))[1]
    im = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(matrix.shape[0]), matrix.index)
    finite = values[np.isfinite(values)]
    mid = (finite.max() + finite.min()) / 2 if finite.size else 0
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.0f}" if percent else f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if v > mid else "white")
    style(ax, xlabel, ylabel, title, legend=False)
    plt.colorbar(im, ax=ax, fraction=0.03).set_label(unit or ("score (x100)" if percent else "value"))
    return ax


def paired_bars(frame: pd.DataFrame, label: str, columns: list[str], title: str, ax=None, xlabel: str | None = None):
    """Horizontal bars, one group per row of ``frame`` (labelled by ``label``), one bar per column;
    ``xlabel`` names the value axis."""
    ax = ax or plt.subplots(figsize=(7, 0.35 * len(frame) * len(columns) + 1))[1]
    y = np.arange(len(frame))
    height = 0.8 / len(columns)
    for k, col in enumerate(columns):  # columns are measures, not models: spare hues, never a model's
        ax.barh(y + k * height, frame[col], height, label=col, color=_SPARE[k % len(_SPARE)])
    ax.set_yticks(y + height * (len(columns) - 1) / 2, frame[label])
    ax.invert_yaxis()
    return style(ax, xlabel, title=title)


def mask_plot(allowed: np.ndarray, labels: list[str], title: str, ax=None):
    """An attention mask as a grid: row = query token, column = key token, dark = may attend."""
    ax = ax or plt.subplots(figsize=(0.28 * len(labels) + 1.5, 0.28 * len(labels) + 1.2))[1]
    ax.imshow(np.asarray(allowed, dtype=float), cmap="Greys", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title)
    return ax


def learning_curves(training: pd.DataFrame, domains: list[str], models: list[str] | None = None,
                    stages: tuple[int, ...] = (1, 2)):
    """Every training run of a chapter as a curve: stage-1 training loss (top row) and stage-2 dev
    NDCG@10 (bottom row), one column per domain; a line per model (the mean over seeds), each seed
    faint behind it. What "trained to convergence" means is read off the bottom row: flat at the end.
    A stage-1 checkpoint that several models start from is drawn once, under the first one's name.
    ``stages=(2,)`` draws the dev curves alone (a chapter whose models train in one stage). A run read
    at its best dev point (a ``selected step``) has a dot there on its own curve."""
    models = models or list(dict.fromkeys(training.model))
    colours = {m: colour_of(m) for m in models}
    # a model that shares its colour with an earlier one (a variant: "MiniLM+CL (256 tokens)") is dashed
    dashes = {m: "--" if list(colours.values()).index(c) < models.index(m) else "-" for m, c in colours.items()}
    two = len(stages) > 1
    fig, axes = plt.subplots(len(stages), len(domains), figsize=(5.2 * len(domains) + 2.4, 3.2 * len(stages)),
                             squeeze=False)
    for col, domain in enumerate(domains):
        runs = training[(training.domain == domain) & training.model.isin(models)]
        stage1 = each_run_once(runs[runs.stage == 1])
        panels = {1: (stage1, "loss_curve", "loss", 1, "stage-1 training loss (nats per token)"),
                  2: (runs[runs.stage == 2], "dev_curve", "dev NDCG@10", 100,
                      f"{'stage-2 ' if two else ''}dev NDCG@10 (x100)")}
        for row, stage in enumerate(stages):
            part, key, value, scale, ylabel = panels[stage]
            ax = axes[row, col]
            for model, group in part.groupby("model", sort=False):
                curves = [(pd.DataFrame(r[key]).set_index("step")[value] * scale, r.get("selected step"))
                         for r in group.to_dict(orient="records") if isinstance(r.get(key), list) and r[key]]
                frames = [frame for frame, _ in curves]
                for frame, chosen in curves:
                    ax.plot(frame.index, frame.values, color=colours[model], ls=dashes[model], alpha=0.25, lw=0.8)
                    if stage == 2 and chosen is not None and not pd.isna(chosen) and chosen in frame.index:
                        ax.plot([chosen], [frame[chosen]], ls="none", marker="o", ms=4, color=colours[model])
                if frames:
                    mean = mean_curve(frames)
                    ax.plot(mean.index, mean.values, color=colours[model], ls=dashes[model], lw=1.8, label=model)
            style(ax, "training step", ylabel, f"{domain}: stage {stage}" if two else domain, legend=False)
            if col == len(domains) - 1 and ax.get_legend_handles_labels()[0]:  # beside the panels, never over a curve
                ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    return fig


def mean_curve(frames: list[pd.Series]) -> pd.Series:
    """The mean of several seeds' curves (indexed by step): each interpolated onto every step any of
    them logged, over the steps they all cover. Seeds whose runs differ in length or logging steps
    (chapter 4's arms train for a number of epochs of a split that each seed sizes itself) would
    otherwise give a "mean" whose points each come from one seed."""
    steps = sorted({float(s) for f in frames for s in f.index})
    low, high = max(float(f.index.min()) for f in frames), min(float(f.index.max()) for f in frames)
    grid = [s for s in steps if low <= s <= high]
    values = np.mean([np.interp(grid, f.index.to_numpy(dtype=float), f.to_numpy(dtype=float)) for f in frames], axis=0)
    return pd.Series(values, index=grid)


LABEL_WIDTH = 55  # characters per line of a claim's label in a forest plot


def claim_forest(table: pd.DataFrame, title: str, ax=None, unit: str = "difference (x100)"):
    """A claim family as a forest plot: each claim's mean difference with its 95% CI (a line), the
    paper's difference (a cross) where it has one, and 0 (no effect) marked. A CI that crosses 0 is
    an inconclusive claim at a glance (a claim that A is *worse* than B says so in its label: it holds
    below 0); a claim the convergence gate left out is dashed and hollow (its
    interval is shown, not judged). A non-inferiority claim ("at most m worse") holds above -m, which a
    short bar on its row marks. A row's domain or embedder leads its label. The legend names only the
    verdicts drawn."""
    def where(r) -> str:
        return "".join(f"{getattr(r, k)}: " for k in ("embedder", "domain") if k in table and isinstance(getattr(r, k), str))

    labels = [textwrap.fill(where(r) + r.claim + (" [claims < 0]" if getattr(r, "expected_sign", 1) == -1 else ""),
                            LABEL_WIDTH)
              for r in table.itertuples()]  # wrapped: one long label would shrink the whole figure on the page
    if ax is None:
        lines = sum(label.count("\n") + 1 for label in labels)
        _, ax = plt.subplots(figsize=(9, 0.2 * lines + 0.25 * len(table) + 1.2))
    looks = {v: (c, "-", c) for v, c in VERDICT_COLOURS.items()} | {NOT_JUDGED: ("0.6", "--", "white")}
    kind = lambda verdict: NOT_JUDGED if str(verdict).startswith(NOT_JUDGED) else verdict
    y = np.arange(len(table))[::-1]
    for yi, r in zip(y, table.itertuples()):
        colour, ls, face = looks.get(kind(r.verdict), ("0.5", "-", "0.5"))
        ax.plot([r.ci_low, r.ci_high], [yi, yi], color=colour, ls=ls, lw=2.5)
        ax.plot(r.ours, yi, "o", color=colour, markerfacecolor=face)
        if r.paper is not None and not pd.isna(r.paper):
            ax.plot(r.paper, yi, "x", color="k", ms=6)
        if (margin := getattr(r, "margin", None)) and not pd.isna(margin):
            ax.plot([-margin, -margin], [yi - 0.3, yi + 0.3], color="k", lw=1.2)
    if "margin" in table and (table.margin.fillna(0) > 0).any():
        ax.plot([], [], "|", color="k", ms=8, label="the claim's margin (holds above it)")
    ax.axvline(0, color="k", lw=0.8, ls=":")
    ax.set_yticks(y, labels, fontsize=8)
    if "paper" in table and table.paper.notna().any():
        ax.plot([], [], "x", color="k", label="the paper")
    for verdict in dict.fromkeys(kind(v) for v in table.verdict):
        colour, ls, _ = looks.get(verdict, ("0.5", "-", "0.5"))
        gated = all(str(v).endswith(NOT_CONVERGED) for v in table.verdict if kind(v) == NOT_JUDGED)
        text = verdict if verdict != NOT_JUDGED else "not judged (an arm far from convergence)" if gated else "not judged"
        ax.plot([], [], color=colour, ls=ls, lw=2.5, label=f"ours, 95% CI: {text}")
    return style(ax, unit, None, title, legend_size=7)


DROPPED = "#bdbdbd"  # what a filter threw away: grey, not a verdict's red


def filter_figure(funnel: pd.DataFrame, queries: pd.DataFrame, earlier: Sequence[str]):
    """Chapter 4's checks: the share of written queries each check leaves (left), and where BM25, a
    judge the filter never consulted, ranks the document of the queries the consistency filter kept
    vs dropped (right): a filter that keeps the better queries shifts the kept histogram to rank 1.
    ``earlier``: the checks applied before the consistency filter (their drops are left out)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    share = funnel["share of written"]
    y = np.arange(len(share))[::-1]
    left.barh(y, 100 * share.to_numpy(), color=colour_of("synthetic"))
    left.set_yticks(y, share.index)
    left.set_xlim(0, 100)
    style(left, "queries left (% of written, mean over seeds)", None, "What each check keeps", legend=False)
    written = queries[~queries["empty"].astype(bool)]
    # Dropped by the consistency filter alone: what an earlier check caught (a copy of the document,
    # which BM25 ranks first; a loop; a quoted code) would muddy the comparison.
    judged = written[~written[list(earlier)].astype(bool).any(axis=1)]
    bins = np.logspace(0, np.log10(max(2, written["BM25 rank"].max())), 20)
    for label, rows, colour in [("kept", judged[judged.kept], colour_of("synthetic")),
                                ("dropped by the consistency filter", judged[~judged.kept], DROPPED)]:
        # Each group as shares of itself: the kept outnumber the dropped, and counts would hide the shift.
        right.hist(rows["BM25 rank"], bins=bins, alpha=0.6, color=colour, label=f"{label} ({len(rows)})",
                   weights=np.full(len(rows), 100 / max(1, len(rows))))
    right.set_xscale("log")
    style(right, "BM25 rank of the query's own document (1 = first; log scale)", "% of the group (pooled over seeds)",
          "Kept vs dropped, as BM25 ranks them")
    fig.tight_layout()
    return fig


MIN_SPAN = 10.0  # NDCG@10 points: the narrowest range an axis of scores is drawn over


def widen(ax, axis: str = "y", span: float = MIN_SPAN) -> None:
    """Draw ``axis`` over at least ``span`` units around its data, so that a noise-sized difference
    of scores does not fill the panel and look like a trend."""
    low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if high - low < span:
        middle = (low + high) / 2
        (ax.set_ylim if axis == "y" else ax.set_xlim)(middle - span / 2, middle + span / 2)



def privacy_utility_figure(curve: pd.DataFrame):
    """Chapter 7's trade-off, one panel per embedder: retrieval NDCG@10 (x) against each attack's leak
    above its template floor (y, word F1 points), both with 95% CI bars, one point per noise scale
    (labelled). A defence that works moves a curve down faster than it moves it left. The x axis spans
    at least ``MIN_SPAN`` points, so a noise-sized change in NDCG@10 does not look like a trend."""
    embedders = list(dict.fromkeys(curve.embedder))
    fig, axes = plt.subplots(1, len(embedders), figsize=(5.5 * len(embedders), 3.8), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], embedders):
        for attack, g in curve[curve.embedder == name].groupby("attack", sort=False):
            yerr = [g["leak"] - g["ci_low"], g["ci_high"] - g["leak"]]
            xerr = [g["NDCG@10"] - g["ndcg_low"], g["ndcg_high"] - g["NDCG@10"]]
            ax.errorbar(g["NDCG@10"], g["leak"], yerr=yerr, xerr=xerr, marker="o", capsize=2, color=colour_of(attack),
                        label=attack)
            for x, y, scale in zip(g["NDCG@10"], g["leak"], g["noise"]):
                ax.annotate(f"{scale:g}", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="grey", linewidth=0.8, linestyle="--")
        widen(ax, "x")
        style(ax, "retrieval NDCG@10 (x100), noisy stored vectors", "leak: word F1 above the floor (points)", name)
    fig.tight_layout()
    return fig
