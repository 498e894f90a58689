"""Rewrite ``book/reproduction.md`` and ``book/benchmarks.md`` from the results files:
``python -m lbr_utils.cli.report --profile cpu``."""

from __future__ import annotations

import argparse

from ..report import BENCHMARK_PAGE, PAGE, benchmarks_page, reproduction_page
from ..results import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lbr_utils.cli.report", description=__doc__)
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args(argv)
    (REPO_ROOT / PAGE).write_text(reproduction_page(args.profile))
    (REPO_ROOT / BENCHMARK_PAGE).write_text(benchmarks_page(args.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
