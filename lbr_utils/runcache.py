"""The run cache (trained checkpoints, scored cells) and the code fingerprints that key it.

Two questions share one mechanism. *May this cached checkpoint be reused?* and *is this chapter's
rendered output older than the code that computed it?* Both are answered by a hash of the source
files a computation depends on. Which files those are is read from the ``import`` statements
themselves (followed transitively through the package), never from a hand-kept list: a list drifts,
and then an edit to ``compress.py`` silently leaves chapter 6 looking fresh.

A chapter depends on its study module's imports and on whatever its notebook imports from
``lbr_utils`` directly. A cache key depends only on the modules that can change a trained model or
a score: :data:`PRESENTATION` modules (results files, statistics, figures, the report) cannot, so
editing a verdict rule does not throw away hours of training.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable, TypeVar

PACKAGE = "lbr_utils"
PACKAGE_ROOT = Path(__file__).resolve().parent
# Modules that format, judge or store numbers but never compute them.
PRESENTATION = frozenset({f"{PACKAGE}.{m}" for m in ("results", "stats", "plots", "report")})
# Modules that reach a cached computation through values, not code: every cache key built on them
# holds those values (a cell's key holds its profile's sizes; a stage-1 key its config), and the
# studies package's __init__ only runs or loads chapters. An edit there (another chapter's sizes)
# keeps the cache; it still marks the chapters whose numbers it changes as stale.
VALUES_ONLY = frozenset({f"{PACKAGE}.profiles", f"{PACKAGE}.studies"})

T = TypeVar("T")


def module_file(module: str, root: Path = PACKAGE_ROOT) -> Path | None:
    """The source file of ``lbr_utils.a.b`` under ``root`` (a module or a package), or None."""
    parts = module.split(".")[1:]
    base = root.joinpath(*parts) if parts else root
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """``lbr_utils`` modules named by the imports in ``tree`` (relative imports resolved), including
    ``from pkg import name`` where ``name`` may be a submodule (names that are not are dropped later).

    Imports inside functions count (they run when the function does), except in a package's
    ``__init__``: there a function-level import is a lazy attribute that importing the package does
    not execute (``lbr_utils.load_embedder``)."""
    out: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    nodes = [n for stmt in tree.body for n in ast.walk(stmt)
             if not (is_package and isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)))]
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] == PACKAGE:
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names}
    return out


def module_closure(modules: Iterable[str], root: Path = PACKAGE_ROOT) -> set[str]:
    """Every ``lbr_utils`` module that importing ``modules`` executes: their imports, transitively,
    plus the ``__init__`` of every package on the way (importing ``a.b`` runs ``a/__init__.py``)."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        path = module_file(module, root)
        if module in seen or path is None:
            continue
        seen.add(module)
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        todo += parents + sorted(_imported(ast.parse(path.read_text()), module, path.name == "__init__.py"))
    return seen


def fingerprint(modules: Iterable[str], root: Path = PACKAGE_ROOT) -> str:
    """A short hash of the named modules' source (their paths and bytes, in a fixed order)."""
    h = hashlib.sha256()
    for module in sorted(modules):
        h.update(module.encode() + b"\0" + module_file(module, root).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def code_fingerprint(*modules: str, root: Path = PACKAGE_ROOT) -> str:
    """The fingerprint that keys a cached computation done by ``modules``: the code it imports,
    minus the presentation modules that cannot change a number and the modules whose values the
    keys hold themselves (:data:`VALUES_ONLY`)."""
    return fingerprint(module_closure(modules, root) - PRESENTATION - VALUES_ONLY, root)


def notebook_imports(notebook: Path) -> set[str]:
    """The ``lbr_utils`` modules a notebook's code cells import (cells that are not Python, such as
    ``%magic`` lines, are skipped)."""
    out: set[str] = set()
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:
            continue
        out |= _imported(tree, "__main__", False)
    return out


def chapter_modules(notebook: Path, root: Path = PACKAGE_ROOT) -> set[str]:
    """The modules behind a chapter's rendered outputs: its study module (``lbr_utils.studies.<the
    notebook's name>``, which the notebook runs by name) and what the notebook imports, with
    everything those import."""
    direct = notebook_imports(notebook)
    study = f"{PACKAGE}.studies.{notebook.stem}"
    if module_file(study, root) is not None:
        direct.add(study)
    return module_closure(direct, root)


def chapter_fingerprint(notebook: Path, root: Path = PACKAGE_ROOT) -> str:
    """What ``reproduce`` stamps into an executed chapter and ``reproduce --stale`` compares against."""
    return fingerprint(chapter_modules(notebook, root), root)


def cache_key(code: str, **parts) -> str:
    """A short hash of ``parts`` (configs, record ids, seed...) and a ``code`` fingerprint."""
    blob = json.dumps({**parts, "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def run_cache_dir() -> Path:
    """Where stage-1 checkpoints (and, without ``LBR_CELLS``, scored cells) live: ``LBR_RUN_CACHE``, else
    the model cache.
    The tests point it at a temporary folder so CI does not keep gigabytes of smoke checkpoints."""
    from .models import cache_dir

    return Path(os.environ["LBR_RUN_CACHE"]) if os.environ.get("LBR_RUN_CACHE") else cache_dir()


def cells_dir() -> Path:
    """Where scored cells live: ``LBR_CELLS``, else the run cache.

    ``reproduce`` points ``LBR_CELLS`` at ``results/<profile>/cells/`` for every profile but ``smoke``,
    and those files are committed: a cell is a few kilobytes of scores, while the study behind them is
    many hours of training on two cores, more than one machine's session. With the cells in the
    repository a study split over sessions (or machines) resumes where the last one stopped, and a
    reader's fresh clone re-renders the chapters without retraining. A checkpoint (hundreds of MB)
    stays in the run cache."""
    return Path(os.environ["LBR_CELLS"]) if os.environ.get("LBR_CELLS") else run_cache_dir()


def cached_json(kind: str, key: str, compute: Callable[[], T]) -> T:
    """``compute()`` once per key, its JSON-able result kept in ``<cells dir>/<kind>/<key>.json``.
    Experiments that share a run (Table 4's causal column *is* Table 3's GL+CL row) share it here,
    and an interrupted chapter resumes from the cells it finished."""
    path = cells_dir() / kind / f"{key}.json"
    if not path.exists():
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(value, default=str))
        tmp.rename(path)
    return json.loads(path.read_text())
