"""What a split study has finished and what it still has to train, read from the cells folder.

The LBR chapters' ``cpu`` study is many hours of training on two cores, longer than one session, so
it is run in parts over several sessions and its scored cells are committed
(:func:`lbr_utils.runcache.cells_dir`). A cell's file is named by a hash, which says nothing to a
person; this module asks each chapter for its cells exactly as the chapter would (the same functions,
so the same keys) but with the cache lookup replaced by a check that *never computes*, and lists
which models are done and what the finished ones cost.

    python -m lbr_utils.studies.progress --profile cpu
"""

from __future__ import annotations

import argparse
import json
import os
from contextlib import contextmanager
from unittest import mock

import pandas as pd

from ..profiles import get_profile, lbr_profile
from ..results import results_dir
from ..runcache import cells_dir
from . import _lbr_cells
from . import ch05a_lbr_stages as stages
from . import ch05b_lbr_ablations as ablations


@contextmanager
def _lookup_only(found: list[dict]):
    """Within the block, an LBR cell is never computed: its lookup records the key and whether the
    cells folder holds it, and returns the stored cell (or an empty one)."""
    def lookup(kind: str, key: str, compute) -> dict:
        path = cells_dir() / kind / f"{key}.json"
        cell = json.loads(path.read_text()) if path.exists() else {}
        training = cell.get("training", [])
        found.append({"key": key, "done": path.exists(), "training": training,
                      "seconds": sum(r.get("seconds", 0.0) for r in training)})
        return cell

    with mock.patch.object(_lbr_cells, "cached_json", lookup):
        yield


def lbr_cells(profile_name: str = "cpu", domains=stages.LBR_DOMAINS, seeds=None) -> pd.DataFrame:
    """One row per model of chapters 5a and 5b: chapter, domain, seed, name, done, its training runs,
    the seconds they took (0 while pending; a shared stage-1 run counts in each model) and its key. A model both chapters read appears once, under 5a."""
    profile = lbr_profile(get_profile(profile_name))
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    rows: list[dict] = []
    for seed in seeds:
        for domain in domains:
            for arm in stages.arms(profile, seed):
                rows += _listed("5a", domain, seed, arm.name,
                                lambda: stages.arm_cell(profile, domain, seed, arm.name))
            for kind in _lbr_cells.BASELINES:
                for length in (None, stages.NATIVE_LENGTH) if kind != "BM25" else (None,):
                    steps = sum(c.steps for c in stages.configs(profile, seed))
                    rows += _listed("5a", domain, seed, kind if length is None else f"{kind} ({length} tokens)",
                                    lambda: _lbr_cells.run_baseline(profile, domain, seed, kind, steps, length))
        for part, cells in ablations.PARTS.items():
            found: list[dict] = []
            with _lookup_only(found):
                names = [c["name"] for c in cells(profile, seed)]
            rows += [dict(f, chapter="5b", domain=ablations.DOMAIN, seed=seed, model=f"{part}: {n}")
                     for f, n in zip(found, names)]
    table = pd.DataFrame(rows)
    return table.drop_duplicates("key").reset_index(drop=True)


def _listed(chapter: str, domain: str, seed: int, name: str, make) -> list[dict]:
    found: list[dict] = []
    with _lookup_only(found):
        make()
    return [dict(f, chapter=chapter, domain=domain, seed=seed, model=name) for f in found]


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Models done per (chapter, domain, seed), and the hours their training took with each training
    run counted once (a stage-1 checkpoint that several models start from is trained once)."""
    by = table.groupby(["chapter", "domain", "seed"])
    hours = by.apply(lambda g: stages.compute_seconds(
        [dict(r, domain=g.name[1], seed=g.name[2]) for runs in g.training for r in runs]) / 3600, include_groups=False)
    return pd.DataFrame({"done": by.done.sum(), "models": by.size(), "training h (done)": hours}).round(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args(argv)
    os.environ.setdefault("LBR_CELLS", str(results_dir(args.profile) / "cells"))
    table = lbr_cells(args.profile)
    print(summary(table).to_string())
    for (chapter, domain, seed), models in table[~table.done].groupby(["chapter", "domain", "seed"]).model:
        print(f"\npending in {chapter} {domain} seed {seed}: {', '.join(models)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
