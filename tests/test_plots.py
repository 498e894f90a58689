"""The book's figures: one colour per model everywhere, curves and claim plots drawn from their tables."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from lbr_utils.plots import PALETTE, ROLES, VERDICT_COLOURS, claim_forest, colour_of, learning_curves, mean_curve  # noqa: E402


def test_a_model_keeps_its_colour_under_any_suffix():
    assert colour_of("LLM+CL @ equal compute") == PALETTE["LLM+CL"] != colour_of("LLM+CL (last token) @ equal compute")
    assert colour_of("LLM+IB-GL+CL") == PALETTE["LLM+IB-GL+CL"] != PALETTE["LLM+IB-GL"]
    # chapter 5b's models: the causal ones keep chapter 5a's colours; the ratio sweep has five distinct hues
    assert colour_of("GL+CL (causal)") == PALETTE["LLM+GL+CL"] and colour_of("IB-GL+CL (causal)") == PALETTE["LLM+IB-GL+CL"]
    assert len({colour_of(f"r={r}") for r in (4, 8, 16, 32, 64)}) == 5
    # a name the book does not know gets a fixed hue that no named model wears
    spare = colour_of("Qwen2.5-1.5B")
    assert spare == colour_of("Qwen2.5-1.5B") and spare not in PALETTE.values()
    assert len({colour_of(m) for m in ("LLM+CL", "LLM+CL (GL+CL pairs)", "LLM+CL (last token)", "LLM+CL (mean)")}) == 4


def test_roles_and_verdicts_wear_no_models_colour():
    others = list(ROLES.values()) + list(VERDICT_COLOURS.values())
    assert len(set(others)) == len(others) and not set(others) & set(PALETTE.values())


def test_learning_curves_draw_a_mean_per_model_and_a_stage1_checkpoint_once():
    curve = [{"step": 1, "dev NDCG@10": 0.1}, {"step": 2, "dev NDCG@10": 0.2}]
    loss = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}]
    training = pd.DataFrame([
        {"model": "LLM+IB-GL", "domain": "d", "seed": 0, "stage": 1, "seconds": 5.0, "steps": 2, "final_loss": 2.0,
         "loss_curve": loss, "dev_curve": []},
        {"model": "LLM+IB-GL+CL", "domain": "d", "seed": 0, "stage": 1, "seconds": 5.0, "steps": 2, "final_loss": 2.0,
         "loss_curve": loss, "dev_curve": []},
        {"model": "LLM+IB-GL+CL", "domain": "d", "seed": 0, "stage": 2, "seconds": 1.0, "loss_curve": [], "dev_curve": curve},
        {"model": "LLM+CL", "domain": "d", "seed": 0, "stage": 2, "seconds": 1.0, "loss_curve": [], "dev_curve": curve}])
    fig = learning_curves(training, ["d"])
    top, bottom = fig.axes
    assert [line.get_label() for line in top.lines if not line.get_label().startswith("_")] == ["LLM+IB-GL"]
    labelled = {line.get_label(): line.get_color() for line in bottom.lines if not line.get_label().startswith("_")}
    assert labelled == {"LLM+IB-GL+CL": PALETTE["LLM+IB-GL+CL"], "LLM+CL": PALETTE["LLM+CL"]}
    assert list(bottom.lines[-1].get_ydata()) == [10.0, 20.0]  # x100
    # one stage only: the dev curves alone, no empty loss panel above them
    [only] = learning_curves(training, ["d"], stages=(2,)).axes
    assert only.get_ylabel() == "dev NDCG@10 (x100)" and len(only.lines) == len(bottom.lines)
    # a run read at its best dev point gets a dot there, on its own curve
    picked = training.assign(**{"selected step": [None, None, None, 1]})
    [panel] = learning_curves(picked, ["d"], stages=(2,)).axes
    [dot] = [line for line in panel.lines if line.get_marker() == "o"]
    assert list(dot.get_xdata()) == [1] and list(dot.get_ydata()) == [10.0] and dot.get_color() == PALETTE["LLM+CL"]


def test_the_mean_of_seeds_logged_at_different_steps_averages_every_seed_at_every_point():
    """Seed 0 logs at 2, 4, 6, seed 1 at 3, 6 (its run is shorter per epoch): each point of the mean is
    both seeds' values, interpolated, over the steps both cover; a mean of misaligned rows would take
    each point from one seed."""
    a = pd.Series([10.0, 20.0, 30.0], index=[2, 4, 6])
    b = pd.Series([0.0, 60.0], index=[3, 6])
    mean = mean_curve([a, b])
    assert list(mean.index) == [3.0, 4.0, 6.0]
    assert list(mean.values) == [(15.0 + 0.0) / 2, (20.0 + 20.0) / 2, (30.0 + 60.0) / 2]


def test_a_variant_sharing_its_colour_is_dashed_and_the_legend_sits_beside_the_curves():
    curve = [{"step": 1, "dev NDCG@10": 0.1}, {"step": 2, "dev NDCG@10": 0.2}]
    training = pd.DataFrame([{"model": m, "domain": "d", "seed": 0, "stage": 2, "seconds": 1.0, "loss_curve": [],
                              "dev_curve": curve} for m in ("MiniLM+CL", "MiniLM+CL (256 tokens)")])
    bottom = learning_curves(training, ["d"]).axes[1]
    styles = {line.get_label(): (line.get_color(), line.get_linestyle()) for line in bottom.lines
              if not line.get_label().startswith("_")}
    assert styles == {"MiniLM+CL": (PALETTE["MiniLM+CL"], "-"), "MiniLM+CL (256 tokens)": (PALETTE["MiniLM+CL"], "--")}
    assert bottom.get_legend().get_bbox_to_anchor().x0 > bottom.get_window_extent().x1  # right of the panel


def test_the_claim_plot_colours_each_interval_by_its_verdict():
    table = pd.DataFrame([{"claim": "a", "ours": 2.0, "ci_low": 1.0, "ci_high": 3.0, "paper": 4.0, "verdict": "reproduced"},
                          {"claim": "b", "ours": 0.5, "ci_low": -1.0, "ci_high": 2.0, "paper": None, "verdict": "inconclusive"}])
    ax = claim_forest(table, "t")
    intervals = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_linewidth() == 2.5]
    assert [tuple(line.get_xdata()) for line in intervals] == [(1.0, 3.0), (-1.0, 2.0)]
    assert [line.get_color() for line in intervals] == [VERDICT_COLOURS["reproduced"], VERDICT_COLOURS["inconclusive"]]


def test_a_non_inferiority_claim_shows_its_margin_and_a_row_its_embedder():
    """"At most 2 worse" holds above -2: a bar marks it on its own row, none on a plain claim's; the
    embedder leads the label of a family that spans several."""
    table = pd.DataFrame([{"claim": "costs at most 2", "ours": -0.5, "ci_low": -1.4, "ci_high": 0.3, "paper": None,
                           "verdict": "reproduced", "margin": 2.0, "embedder": "MiniLM"},
                          {"claim": "leaks", "ours": 30.0, "ci_low": 25.0, "ci_high": 35.0, "paper": None,
                           "verdict": "reproduced", "margin": 0.0, "embedder": "SmolLM2"}])
    ax = claim_forest(table, "t")
    bars = [line for line in ax.lines if list(line.get_xdata()) == [-2.0, -2.0]]
    assert len(bars) == 1 and min(bars[0].get_ydata()) < 1 < max(bars[0].get_ydata())  # the first row sits at y = 1
    assert [t.get_text() for t in ax.get_yticklabels()] == ["MiniLM: costs at most 2", "SmolLM2: leaks"]


def test_a_claim_left_out_by_the_convergence_gate_is_not_drawn_as_a_verdict():
    table = pd.DataFrame([{"claim": "a", "ours": -5.0, "ci_low": -8.0, "ci_high": -2.0, "paper": None,
                           "verdict": "not judged: LBR not converged"},
                          {"claim": "b", "ours": 0.5, "ci_low": -1.0, "ci_high": 2.0, "paper": None, "verdict": "inconclusive"}])
    ax = claim_forest(table, "t")
    intervals = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_linewidth() == 2.5]
    assert [line.get_linestyle() for line in intervals] == ["--", "-"]
    assert intervals[0].get_color() not in VERDICT_COLOURS.values()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["ours, 95% CI: not judged (an arm far from convergence)", "ours, 95% CI: inconclusive"]
