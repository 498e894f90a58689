"""Shared fixtures. Tests never write into the repo's results/ and never reach a model hub."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path, monkeypatch):
    monkeypatch.setenv("LBR_RESULTS_DIR", str(tmp_path / "results"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_run_cache(tmp_path_factory):
    """Stage-1 checkpoints and scored cells of the smoke runs go to a temporary folder, never to the
    committed ``results/<profile>/cells`` (the converted SmolLM2 stays in the shared model cache)."""
    os.environ["LBR_RUN_CACHE"] = str(tmp_path_factory.mktemp("run-cache"))
    os.environ.pop("LBR_CELLS", None)  # a maintainer's shell may point it at the committed cells


@pytest.fixture(scope="session")
def tiny():
    from lbr_utils.models import load_causal_lm

    return load_causal_lm("tiny")


@pytest.fixture(scope="session")
def smollm2():
    from lbr_utils.models import load_causal_lm

    return load_causal_lm("smollm2-135m")


@pytest.fixture(scope="module")
def tiny_bn():
    """The tiny model with 16 bottleneck tokens, one per test module (tests of the mask, LBR's losses
    and generation)."""
    from _bottleneck import _tiny_with_bottleneck

    return _tiny_with_bottleneck()


@pytest.fixture(scope="module")
def cl_records():
    """The smoke profile's contrastive records of the medical domain (tests of batching and contrastive
    training)."""
    from lbr_utils.data import load_domain
    from lbr_utils.profiles import get_profile

    return load_domain("medical", get_profile("smoke")).cl
