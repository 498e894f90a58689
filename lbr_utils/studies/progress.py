"""What a split study has finished and what it still has to train, read from the cells folder.

The ``cpu`` study of chapters 3, 5a, 5b and 6 is many hours of training on two cores, longer than one
session, so it is run in parts over several sessions and its scored cells are committed
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
from . import _compression_cells, _contrastive_cells, _lbr_cells, _timing_cells
from . import ch03_contrastive as contrastive
from . import ch05a_lbr_stages as stages
from . import ch05b_lbr_ablations as ablations
from ._compression_plan import DOMAIN as COMPRESSION_DOMAIN


@contextmanager
def _lookup_only(found: list[dict], module=_lbr_cells):
    """Within the block, a cell of ``module`` is never computed: its lookup records the key and whether
    the cells folder holds it, and returns the stored cell (or an empty one)."""
    def lookup(kind: str, key: str, compute) -> dict:
        path = cells_dir() / kind / f"{key}.json"
        cell = json.loads(path.read_text()) if path.exists() else {}
        training = cell.get("training", [])
        found.append({"key": key, "done": path.exists(), "training": training,
                      "seconds": sum(r.get("seconds", 0.0) for r in training)})
        return cell

    with mock.patch.object(module, "cached_json", lookup):
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


def other_cells(profile_name: str = "cpu", seeds=None) -> pd.DataFrame:
    """The same listing for chapter 3 (one model per recipe and seed, the untrained LLM and MiniLM as
    is included) and chapter 6 (one quality cell per seed, and the timing cell, listed under seed -1)."""
    profile = lbr_profile(get_profile(profile_name))
    plain = get_profile(profile_name)  # chapter 6 runs the profile as it is
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    rows: list[dict] = []
    for seed in seeds:
        for name, cfg in contrastive.models(profile, seed).items():
            rows += _listed("3", "medical", seed, name,
                            lambda: _contrastive_cells.cell(profile, "medical", seed, name, cfg), _contrastive_cells)
        rows += _listed("6", COMPRESSION_DOMAIN, seed, "quality",
                        lambda: _compression_cells.quality_cell(plain, seed), _compression_cells)
    rows += _listed("6", COMPRESSION_DOMAIN, -1, "timing", lambda: _timing_cells.timing_cell(plain), _timing_cells)
    return pd.DataFrame(rows)


def _listed(chapter: str, domain: str, seed: int, name: str, make, module=_lbr_cells) -> list[dict]:
    found: list[dict] = []
    with _lookup_only(found, module):
        make()
    return [dict(f, chapter=chapter, domain=domain, seed=seed, model=name,
                 training=[dict(r, stage=r.get("stage", 2)) for r in f["training"]]) for f in found]


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
    table = pd.concat([lbr_cells(args.profile), other_cells(args.profile)], ignore_index=True)
    print(summary(table).to_string())
    for (chapter, domain, seed), models in table[~table.done].groupby(["chapter", "domain", "seed"]).model:
        print(f"\npending in {chapter} {domain} seed {seed}: {', '.join(models)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
