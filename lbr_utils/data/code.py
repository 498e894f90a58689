"""Code: a docstring's summary -> the function it documents, from the Python standard library.

CodeSearchNet-style pairs that need no download: every documented function of the stdlib this
Python ships. The answer is the function's code with its docstring removed (so the query text is not
copied into the answer). The stdlib differs across Python versions, so the data card records the
version the splits were cut from.
"""

from __future__ import annotations

import ast
import copy
import sysconfig
from functools import lru_cache
from pathlib import Path

from .records import QARecord

_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "tkinter", "ensurepip",
              "__pycache__", "pydoc_data"}


def _summary(doc: str) -> str:
    """The docstring's first paragraph on one line."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _without_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    clone = copy.copy(node)
    clone.body = node.body[1:]
    return ast.unparse(clone)


@lru_cache(maxsize=1)
def code_records(max_answer_chars: int = 1200) -> tuple[QARecord, ...]:
    """All documented stdlib functions with a one-paragraph summary of 20-300 characters."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _SKIP_DIRS & set(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = ".".join(rel.with_suffix("").parts)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or len(node.body) < 2:
                continue
            doc = ast.get_docstring(node)
            if not doc or node.name.startswith("__"):
                continue
            question = _summary(doc)
            answer = _without_docstring(node)
            if not 20 <= len(question) <= 300 or len(answer) > max_answer_chars:
                continue
            entity = f"{module}:{node.name}:{node.lineno}"
            out.append(QARecord(id=f"code-{entity}", domain="code", question=question, answer=answer,
                                entity=entity, group=module))
    return tuple(out)
