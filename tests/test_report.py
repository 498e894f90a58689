"""The reproduction report page is made from the results files, and a stale page fails here."""

import pandas as pd

from lbr_utils.report import BENCHMARK_PAGE, PAGE, benchmarks_page, reproduction_page
from lbr_utils.results import REPO_ROOT
from test_studies import _stages_record


def test_the_committed_pages_match_the_results_files(monkeypatch):
    monkeypatch.delenv("LBR_RESULTS_DIR")  # read the repository's own results
    stale = "is stale: run python -m lbr_utils.cli.report"
    assert (REPO_ROOT / PAGE).read_text() == reproduction_page("cpu"), f"{PAGE} {stale}"
    assert (REPO_ROOT / BENCHMARK_PAGE).read_text() == benchmarks_page("cpu"), f"{BENCHMARK_PAGE} {stale}"


def test_the_benchmark_page_follows_its_files(tmp_path, monkeypatch):
    """A benchmark that has not run says so; one that has shows its numbers and its provenance."""
    from lbr_utils.results import save_results

    monkeypatch.setenv("LBR_RESULTS_DIR", str(tmp_path))
    assert benchmarks_page("cpu").count("Not run yet") == 5
    arms = {arm: {"useful_tokens_per_s": t, "median_step_s": 1.0, "useful_flops": 1.0, "share_of_bf16_peak": 0.25}
            for arm, t in [("ours", 300.0), ("before", 200.0), ("naive fp32", 100.0)]}
    training = {"stage 1": {"useful_tokens_per_step": 400.0, **arms, "ours vs before": 1.5, "ours vs naive fp32": 3.0}}
    embedding = {"fp32": {"ours_texts_per_s": 30.0, "st_texts_per_s": 20.0, "speedup_vs_st": 1.5, "min_cosine": 1.0}}
    save_results("benchmarks", "cpu", {"training": training, "embedding": embedding}, {}, [0], 1.0)
    page = benchmarks_page("cpu")
    row = next(line for line in page.splitlines() if line.startswith("| stage 1"))
    assert "300.00" in row and "1.50" in row and "3.00" in row and "25.00" in row
    assert "Numbers from results/cpu/benchmarks.json" in page and page.count("Not run yet") == 3


def test_the_page_follows_the_results_file(tmp_path, monkeypatch):
    """Numbers and verdicts on the page move with the file: LBR clearly above the best CL-only arm is
    'reproduced', clearly below it 'contradicted', and the printed difference is the file's."""
    from lbr_utils.results import save_results
    from lbr_utils.studies.ch05a_lbr_stages import EQUAL

    monkeypatch.setenv("LBR_RESULTS_DIR", str(tmp_path))
    claim = f"| LBR beats LLM+CL{EQUAL} (the best CL-only LLM on dev) "
    for gain, verdict, printed in [(0.10, "reproduced", "10."), (-0.10, "contradicted", "-10.")]:
        record = _stages_record(gain)
        save_results("ch05a_lbr_stages", "cpu", record["metrics"], record["config"], [0, 1, 2], 1.0)
        page = reproduction_page("cpu")
        line = next(l for l in page.splitlines() if claim in l)
        assert verdict in line and printed in line, line
        assert "## In short" in page and verdict in page.split("## In short")[1].split("##")[0]


def test_cost_table_flags_notebooks_over_the_budget():
    from lbr_utils.report import cost_table

    table = cost_table([{"notebook": "a", "wall_time_s": 5400.0, "peak_memory_mib": 8192.0},
                        {"notebook": "b", "wall_time_s": 5401.0, "peak_memory_mib": 100.0},
                        {"notebook": "c", "wall_time_s": 60.0, "peak_memory_mib": 8193.0, "note": "cached"}])
    assert table["within budget"].tolist()[:2] == ["yes", "no"] and pd.isna(table["within budget"].iloc[2])  # a noted row is not judged
    assert table["wall time (min)"].iloc[0] == 90.0 and table["note"].iloc[2] == "cached"
    # a chapter computed in parts: its whole run reads their cells, so its minutes are not the chapter's cost
    parts = cost_table([{"notebook": "d", "wall_time_s": 9000.0, "peak_memory_mib": 100.0, "parameters": {"seeds": [0]},
                         "threads": 1},
                        {"notebook": "d", "wall_time_s": 30.0, "peak_memory_mib": 100.0, "parameters": {}, "threads": 1}])
    assert parts["within budget"].tolist()[0] == "no" and pd.isna(parts["within budget"].iloc[1])
    assert parts["note"].iloc[1].startswith("assembled from the parts' cells") and parts["threads"].tolist() == [1, 1]


def test_the_page_opens_with_the_survey_verdicts_and_says_what_would_decide_each(tmp_path, monkeypatch):
    """With a survey chapter's results only, "In short" counts the survey's verdicts, and the survey
    table gives an inconclusive claim the seeds that would decide it (a decided one has none)."""
    from lbr_utils.results import save_results
    from test_studies import _synthetic_record

    monkeypatch.setenv("LBR_RESULTS_DIR", str(tmp_path))
    record = _synthetic_record(0.03)
    save_results("ch04_synthetic", "cpu", record["metrics"], {}, [0, 1, 2], 1.0)
    page = reproduction_page("cpu")
    short = page.split("## In short")[1].split("\n## ")[0]
    assert "**The survey's claims (chapter 4).** 6 claims:" in short and "(chapters 2, 3, 6, 7: not run at `cpu` yet)" in short
    assert "## The survey's claims\n" in page and "ch01_baselines" not in page  # only the chapters whose claims it shows
    header = next(line for line in page.splitlines() if line.startswith("| claim") or "| claim " in line)
    assert "seeds to decide" in header
    added = next(line for line in page.splitlines() if "added to human pairs improve" in line)
    assert "reproduced" in added and added.rstrip(" |").endswith("–")


def test_the_allocator_finding_follows_its_numbers():
    """The memory benchmark's sentence says what its peaks say: a bounded arena 500 MiB under the
    default lowered the peak; all bounded settings above it did not."""
    from lbr_utils.report import arena_finding

    peaks = lambda *mib: {name: {"peak_rss_mib": m, "seconds_per_step": 1.0}
                          for name, m in zip(("glibc default", "MALLOC_ARENA_MAX=2", "MALLOC_ARENA_MAX=1"), mib)}
    assert arena_finding(peaks(9000.0, 8500.0, 8800.0)).startswith(
        "Bounding the arenas lowered the peak: the best bounded setting (MALLOC_ARENA_MAX=2) peaked at 8500 MiB "
        "against the default's 9000 (-500 MiB)")
    assert "did not lower" in arena_finding(peaks(9000.0, 9100.0, 9050.0))
