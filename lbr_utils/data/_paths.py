"""Locate data files inside installed packages without importing them.

Some data packages import heavy (or broken) dependencies at import time; we only need their files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(package: str, pip_name: str | None = None) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the data package {package!r} is not installed: pip install {pip_name or package}")
    return Path(list(spec.submodule_search_locations)[0])
