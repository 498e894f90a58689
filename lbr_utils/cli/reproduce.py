"""Reproduce the book: execute every notebook with papermill in one profile, then build the book.

    python -m lbr_utils.cli.reproduce --profile smoke              # CI-sized, ~minutes
    python -m lbr_utils.cli.reproduce --profile cpu --in-place     # the book's numbers, hours on 2 cores

By default the executed notebooks go to ``_build/executed/<profile>/`` and the committed ones (which
carry the ``cpu`` study's outputs) are left untouched, so the book that is built shows the study's
numbers; ``--in-place`` writes the chapters themselves (what a maintainer does to re-render the
book). Each notebook's wall time and peak memory (the kernel's resident set, sampled) are printed and
written to ``results/<profile>/notebook_costs.json``, so a reader knows what a chapter costs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from ..profiles import PROFILE_NAMES
from ..results import REPO_ROOT, git_commit, load_results, results_dir, save_results
from ..runcache import PACKAGE_ROOT, chapter_fingerprint

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """The chapters in reading order (``chNN_<name>.ipynb``, named like their study module)."""
    return sorted(directory.glob("ch[0-9]*.ipynb"))


class _PeakRSS:
    """Samples the resident memory of this process's descendants (the Jupyter kernel) in a thread."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> "_PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _ipc_kernel_manager():
    """A kernel manager that talks to its kernel over local sockets (IPC) instead of TCP: the kernel
    then has nothing to warn about (over TCP every kernel logs an "unencrypted transport" warning,
    which buried a reproduce log in hundreds of identical lines)."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"

        @default("ip")
        def _default_ip(self) -> str:
            # the sockets' path prefix; jupyter_client's default ("kernel-ipc") is relative to the
            # notebook folder, where a killed run would leave its sockets among the chapters
            return str(Path(tempfile.mkdtemp(prefix="lbr-kernel-")) / "kernel-ipc")

    return IPCKernelManager


def execute(notebook: Path, profile: str, output: Path, cwd: Path | None = None, parameters: dict | None = None) -> dict:
    """Run one notebook with papermill (``profile`` and ``parameters`` injected into its ``parameters`` cell)."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # A notebook shows the committed results by default (a reader's "Run all" takes minutes); this
    # command computes them unless told otherwise.
    parameters = {"profile": profile, "reuse_results": False, **(parameters or {})}
    with _PeakRSS() as mem:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters,
                                   cwd=str(cwd or notebook.parent), kernel_name="python3",
                                   progress_bar=False, log_output=False, kernel_manager_class=_ipc_kernel_manager())
    stamp_outputs(output, profile)
    return {"notebook": notebook.name, "wall_time_s": round(time.perf_counter() - start, 1),
            "peak_memory_mib": round(mem.peak / 2**20, 1)}


PROFILE_NOTE = "lbr-profile-note"  # the tag of the note that a page shows another profile's run


def source_hash(notebook: Path) -> str:
    """A hash of a notebook's cell sources, leaving out papermill's injected-parameters cell and the
    profile note (so an executed notebook and its source hash alike)."""
    cells = json.loads(notebook.read_text())["cells"]
    kept = ["".join(c["source"]) for c in cells
            if not {"injected-parameters", PROFILE_NOTE} & set(c.get("metadata", {}).get("tags", []))]
    return hashlib.sha256("\n\x00".join(kept).encode()).hexdigest()[:16]


def stamp_outputs(notebook: Path, profile: str) -> None:
    """Record in the executed notebook which source, code and profile its outputs came from."""
    import nbformat

    data = nbformat.read(notebook, as_version=4)
    for cell in data.cells:  # papermill's copy of the parameters: for the record, not for the page
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags:
            if "remove-cell" not in tags:
                tags.append("remove-cell")
            # Jupyter still runs a removed cell: a reader's "Run all" must read the results shown,
            # not recompute them because this render did (the parameters cell says how to).
            cell.source = "\n".join(line for line in cell.source.splitlines()
                                     if not re.match(r"reuse_results\s*=", line)) + "\n"
    data.cells = [c for c in data.cells if PROFILE_NOTE not in c.metadata.get("tags", [])]
    if profile != "cpu":  # every page of a book built from such outputs says so
        note = nbformat.v4.new_markdown_cell(f"```{{note}}\nThis page shows a `{profile}` run, not the study's "
                                             f"numbers (those are the `cpu` profile's).\n```")
        note.metadata["tags"] = [PROFILE_NOTE]
        data.cells.insert(1, note)
    data.metadata["lbr"] = {"profile": profile, "source_hash": source_hash(notebook),
                            "code": chapter_fingerprint(notebook),
                            "commit": git_commit(),
                            "executed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    nbformat.write(data, notebook)


def stale_notebooks(directory: Path = NOTEBOOK_DIR, root: Path = PACKAGE_ROOT) -> list[tuple[str, str]]:
    """(notebook, why) for every notebook whose rendered outputs are older than its current source
    or than the package code its numbers depend on (``root``: the package's source folder)."""
    out = []
    for nb in notebooks(directory):
        stamp = json.loads(nb.read_text())["metadata"].get("lbr")
        if stamp is None:
            out.append((nb.name, "no record of a reproduce run"))
        elif stamp["source_hash"] != source_hash(nb):
            out.append((nb.name, f"its cells changed since it was executed ({stamp['executed']})"))
        elif stamp["code"] != chapter_fingerprint(nb, root):
            out.append((nb.name, f"lbr_utils code changed since it was executed ({stamp['executed']})"))
    return out


def _cost_key(cost: dict) -> tuple[str, str]:
    return cost["notebook"], json.dumps(cost.get("parameters") or {}, sort_keys=True)


def save_notebook_costs(profile: str, costs: list[dict], wall_time_s: float) -> None:
    """Merge these notebooks' costs into ``results/<profile>/notebook_costs.json`` (a run of one
    chapter must not erase what the others cost). A part of a split chapter (run with ``--param``,
    e.g. one seed) is its own row beside the run that assembles the chapter from its cells."""
    try:
        previous = {_cost_key(c): c for c in load_results("notebook_costs", profile)["metrics"]}
    except FileNotFoundError:
        previous = {}
    merged = previous | {_cost_key(c): c for c in costs}
    rows = [merged[k] for k in sorted(merged)]
    save_results("notebook_costs", profile, rows, {"notebooks": [c["notebook"] for c in rows]},
                 seeds=None, wall_time_s=wall_time_s)


def resumed_note(chapter: str, profile: str, wall_time_s: float, began: _dt.datetime) -> str | None:
    """The cost table's note for a run that read cells an earlier run computed: the compute its results
    file (written by this run, after ``began``) records is well above its own wall time, so that time
    is not what the part cost. None for a run that computed what it reports, or left no results file."""
    try:
        record = load_results(chapter, profile)
    except FileNotFoundError:
        return None
    computed = (record.get("config") or {}).get("compute_seconds")
    if not computed or _dt.datetime.fromisoformat(record["provenance"]["date"]) < began or computed <= 1.1 * wall_time_s:
        return None
    return f"resumed: its cells took {computed / 3600:.1f} h to compute, in this and earlier runs"


def build_book(path_output: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``jupyter-book build .`` into ``_build/html``; ``-W``: any warning fails the build."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(REPO_ROOT), "-W", "-n", "--keep-going"]
    if path_output:
        cmd += ["--path-output", str(path_output)]
    return subprocess.run(cmd, check=check, cwd=REPO_ROOT, capture_output=not check, text=True)


def _literal(text: str):
    """``--param reuse_results=True`` means the bool; ``--param domains=medical,code`` stays a string."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILE_NAMES, default="smoke")
    parser.add_argument("--only", nargs="*", help="notebook file names to run (default: all)")
    parser.add_argument("--output-dir", type=Path,
                        help="where the executed notebooks go (default: _build/executed/<profile>/)")
    parser.add_argument("--in-place", action="store_true",
                        help="execute the chapters in notebooks/ themselves (their outputs are what the book renders)")
    parser.add_argument("--no-book", action="store_true", help="skip building the book")
    parser.add_argument("--stale", action="store_true",
                        help="list notebooks whose rendered outputs are older than their source, and exit")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="another papermill parameter (a string), e.g. --param domains=medical")
    args = parser.parse_args(argv)
    extra = {name: _literal(value) for name, value in (p.split("=", 1) for p in args.param)}
    if args.stale:
        stale = stale_notebooks()
        for name, why in stale:
            print(f"{name}: {why}")
        return 1 if stale else 0

    chosen = [nb for nb in notebooks() if not args.only or nb.name in args.only]
    if not chosen:
        parser.error(f"no notebooks matched {args.only}")
    # Offline unless a model may come from the hub: the gpu profile's, or one named by LBR_MODEL.
    os.environ.setdefault("HF_HUB_OFFLINE", "0" if args.profile == "gpu" or os.environ.get("LBR_MODEL") else "1")
    if args.profile != "smoke":  # the study's cells are committed, so a run split over sessions resumes
        os.environ.setdefault("LBR_CELLS", str(results_dir(args.profile) / "cells"))
    costs, start = [], time.perf_counter()
    if args.in_place and args.output_dir:
        parser.error("--in-place and --output-dir exclude each other")
    out_dir = None if args.in_place else (args.output_dir or REPO_ROOT / "_build" / "executed" / args.profile)
    print(f"Executing {len(chosen)} notebook(s), profile {args.profile}, into "
          f"{'notebooks/ (in place)' if out_dir is None else out_dir}", flush=True)
    failed: dict[str, str] = {}
    for nb in chosen:
        began = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
        try:
            cost = execute(nb, args.profile, out_dir / nb.name if out_dir else nb, parameters=extra)
        except Exception as error:  # one chapter's failure must not hide whether the others run
            failed[nb.name] = _why(error)
            print(f"  {nb.name:<28} FAILED  {failed[nb.name]}", flush=True)
            continue
        # Which part of a split chapter this was, and on how many threads (parts run side by side).
        costs.append(cost | {"parameters": {k: v for k, v in extra.items() if k != "reuse_results"},
                             "threads": int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count())}
                     | ({"note": note} if (note := resumed_note(nb.stem, args.profile, cost["wall_time_s"], began)) else {}))
        print(f"  {nb.name:<28} ok  {cost['wall_time_s']:7.1f} s  peak {cost['peak_memory_mib'] / 1024:5.2f} GiB", flush=True)
    if costs and not extra.get("reuse_results"):  # a re-render is not what a chapter costs
        save_notebook_costs(args.profile, costs, time.perf_counter() - start)
    book = None
    if not args.no_book:  # its log is long: shown only when the build fails
        built = build_book(check=False)
        book = "built: _build/html/index.html" if built.returncode == 0 else (
            "FAILED, the end of its log:\n" + "\n".join((built.stdout + built.stderr).splitlines()[-30:]))
    print(f"\n{len(costs)} of {len(chosen)} notebook(s) executed in {(time.perf_counter() - start) / 60:.1f} min"
          + "".join(f"\n  failed: {name}: {why}" for name, why in failed.items())
          + (f"\nBook {book}" if book else ""), flush=True)
    return 1 if failed or (book and not book.startswith("built")) else 0


def _why(error: Exception) -> str:
    """One line for a failed notebook: the cell's exception (papermill's error carries its name and
    value), else the error itself."""
    name, value = getattr(error, "ename", type(error).__name__), getattr(error, "evalue", str(error))
    return f"{name}: {value}".splitlines()[0][:200]


if __name__ == "__main__":
    raise SystemExit(main())
