"""Results files with provenance.

Every number in the book is read from a file written here, never typed by hand. A results file says
where its numbers came from: git commit, profile, seed(s), package versions, wall time and peak
memory, so a reader can tell a smoke run from the real one and rerun it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from .profiles import BUDGET

REPO_ROOT = Path(__file__).resolve().parent.parent
_TRACKED_PACKAGES = (
    "torch", "transformers", "sentence-transformers", "mteb", "peft", "accelerate", "bm25s",
    "numpy", "lbr_utils",
)


def results_dir(profile: str, root: Path | None = None) -> Path:
    """``results/<profile>/`` (``LBR_RESULTS_DIR`` overrides the root, so tests never touch the repo's)."""
    base = Path(root or os.environ.get("LBR_RESULTS_DIR") or REPO_ROOT / "results")
    return base / profile


def git_commit() -> str:
    """The commit the code ran at, with ``+dirty`` when tracked code had uncommitted changes.

    ``notebooks/`` and ``results/`` are left out of the check (papermill rewrites a notebook in place
    while it runs, and the run's own results files are what it is writing), and so are ``tests/`` and
    ``book/``, which no number is computed by."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!notebooks", ":!results", ":!tests", ":!book"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in _TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def peak_memory_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def provenance(profile: str, seeds: Any, wall_time_s: float) -> dict:
    return {
        "profile": profile,
        "seeds": seeds,
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 2),
        "peak_memory_mib": round(peak_memory_mib(), 1),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} x{os.cpu_count()}",
        "versions": package_versions(),
    }


def save_results(experiment: str, profile: str, metrics: Any, config: dict, seeds: Any,
                 wall_time_s: float, root: Path | None = None) -> Path:
    """Write ``results/<profile>/<experiment>.json`` and return its path. ``metrics`` may map table
    names to DataFrames; they are stored as lists of rows (``load_tables`` turns them back)."""
    if isinstance(metrics, dict):
        metrics = {k: v.to_dict(orient="records") if hasattr(v, "to_dict") else v for k, v in metrics.items()}
    path = results_dir(profile, root) / f"{experiment}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"experiment": experiment, "metrics": metrics, "config": config,
              "provenance": provenance(profile, seeds, wall_time_s)}
    path.write_text(json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")
    return path


def load_results(experiment: str, profile: str, root: Path | None = None) -> dict:
    path = results_dir(profile, root) / f"{experiment}.json"
    if not path.exists():
        raise FileNotFoundError(f"no results file {path}: run the notebook that writes "
                                f"{experiment!r} in profile {profile!r} first")
    return json.loads(path.read_text())


def score_of(rows: list[dict], model: str, task: str, metric: str = "NDCG@10") -> float:
    """One score from a results file's long rows (``model``, ``task``, ``metric``, ``score``)."""
    found = [r["score"] for r in rows if r["model"] == model and r["task"] == task and r["metric"] == metric]
    if len(found) != 1:
        raise KeyError(f"{len(found)} rows for model {model!r}, task {task!r}, metric {metric!r}")
    return found[0]


def paper_numbers() -> dict:
    """The LBR paper's tables, as quoted in ``lbr_utils/paper_lbr.json`` (quoted, never computed)."""
    from importlib import resources

    return json.loads(resources.files("lbr_utils").joinpath("paper_lbr.json").read_text())


def load_tables(record: dict):
    """A results record whose metrics are ``{name: list of rows}`` as ``{name: DataFrame}``."""
    import pandas as pd

    return {name: pd.DataFrame(rows) for name, rows in record["metrics"].items()}


@contextmanager
def timer() -> Iterator[dict]:
    """``with timer() as t: ...`` then ``t["seconds"]``."""
    t: dict = {}
    start = time.perf_counter()
    try:
        yield t
    finally:
        t["seconds"] = time.perf_counter() - start


def run_stamp() -> str:
    """The banner half a notebook prints at its top: which code ran, and when."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return f"code at commit `{git_commit()[:12]}`, executed {now:%Y-%m-%d %H:%M} UTC"


def provenance_line(record: dict) -> str:
    """One sentence a notebook prints under a table: where these numbers came from."""
    p = record["provenance"]
    computed = computed_seconds(record)
    # A run assembled from cells that earlier runs (parts) computed took seconds; the computing did not.
    cells = (f" (it read cells that took {computed / 3600:.1f} h to compute in earlier runs)"
             if computed > p["wall_time_s"] else "")
    commit = p["git_commit"][:12] + ("+dirty" if p["git_commit"].endswith("+dirty") else "")
    return (f"Numbers from results/{p['profile']}/{record['experiment']}.json: profile `{p['profile']}`, "
            f"commit {commit}, {p['date'][:10]}, seeds {p['seeds']}, "
            f"wall time {p['wall_time_s']:.0f} s{cells}, peak memory {p['peak_memory_mib']:.0f} MiB.")


def _cost_rows(experiment: str, profile: str) -> list[dict]:
    """The chapter's rows of ``notebook_costs`` (its parts and its whole runs); none if unrecorded."""
    try:
        rows = load_results("notebook_costs", profile)["metrics"]
    except FileNotFoundError:
        return []
    return [r for r in rows if r["notebook"] == experiment + ".ipynb"]


def computed_seconds(record: dict) -> float:
    """What a chapter's numbers took to compute: the training its cells record (``compute_seconds``),
    else the summed wall time of the chapter's recorded runs (parts included), each of which computed
    the cells the ones before it had not."""
    training = (record.get("config") or {}).get("compute_seconds")
    if training:
        return float(training)
    return sum(r["wall_time_s"] for r in _cost_rows(record["experiment"], record["provenance"]["profile"]))


def reuse_note(experiment: str, profile: str, reused: bool) -> str:
    """What a chapter page shows: the committed results, or a fresh run, and how to get the other."""
    if not reused:
        return f"Computed in this run (profile `{profile}`), and written to `results/{profile}/{experiment}.json`."
    return (f"Showing the committed results, `results/{profile}/{experiment}.json`. To recompute them, set "
            f"`reuse_results = False` in the parameters cell and run all{_recompute_cost(experiment, profile)}, or run "
            f"`python -m lbr_utils.cli.reproduce --profile {profile} --only {experiment}.ipynb`.")


def budget_line(experiment: str, profile: str) -> str:
    """What a chapter's runs cost against the `cpu` budget (``profiles.BUDGET``), said on the page when
    a run went over it: a reader planning a recompute should not learn it from the report alone."""
    rows = _cost_rows(experiment, profile)
    if not rows:
        return ""
    longest, peak = max(r["wall_time_s"] for r in rows), max(r["peak_memory_mib"] for r in rows)
    if longest <= BUDGET["notebook_s"] and peak <= BUDGET["memory_mib"]:
        return ""
    return (f"Over budget: this chapter's `{profile}` runs ({len(rows)}, its parts included) took up to "
            f"{longest / 60:.0f} min and {peak / 1024:.1f} GiB each, against a budget of "
            f"{BUDGET['notebook_s'] // 60} min and {BUDGET['memory_mib'] // 1024} GiB per run.")


def _recompute_cost(experiment: str, profile: str) -> str:
    """What recomputing a chapter costs, from what it cost: its notebook run's wall time, unless its
    cells took longer to compute (the notebook then read cells that earlier runs computed, and a
    recompute is best done in parts, as README shows)."""
    whole = [r for r in _cost_rows(experiment, profile) if not r.get("parameters")]
    wall = whole[0]["wall_time_s"] if whole else 0.0
    try:
        computed = computed_seconds(load_results(experiment, profile))
    except FileNotFoundError:
        computed = 0.0
    if computed > wall:
        return (f" (computing it took about {computed / 3600:.1f} h, summed over its runs: README's "
                "\"Profiles and where the book's numbers come from\" runs it in parts, each resumable)")
    return f" (about {wall / 60:.0f} min on two CPU cores)" if wall else ""
