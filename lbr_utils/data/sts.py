"""Semantic textual similarity sets with human scores, from gensim's test data.

- Lee: 50 news documents, every pair scored by humans (Lee, Pincombe & Welsh, 2005): 1,225 pairs.
- WordSim-353 and SimLex-999: word pairs with mean human ratings (relatedness vs. strict similarity).
An embedder is scored by the Spearman correlation between its cosine similarities and these scores.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ._paths import package_dir

STS_NAMES = ("lee", "wordsim353", "simlex999")


@dataclass(frozen=True)
class STSSet:
    name: str
    pairs: tuple[tuple[str, str, float], ...]

    def __len__(self) -> int:
        return len(self.pairs)


def _test_data():
    return package_dir("gensim") / "test" / "test_data"


def _word_pairs(filename: str) -> list[tuple[str, str, float]]:
    out = []
    for line in (_test_data() / filename).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        a, b, score = line.split("\t")[:3]
        out.append((a, b, float(score)))
    return out


def _lee_pairs() -> list[tuple[str, str, float]]:
    docs = (_test_data() / "lee.cor").read_text(encoding="latin-1").strip().splitlines()
    sims = np.loadtxt(_test_data() / "similarities0-1.txt")
    n = len(docs)
    if sims.shape != (n, n):
        raise ValueError(f"Lee data mismatch: {n} documents but a {sims.shape} similarity matrix")
    return [(docs[i].strip(), docs[j].strip(), float(sims[i, j])) for i in range(n) for j in range(i + 1, n)]


@lru_cache(maxsize=None)
def _all_pairs(name: str) -> tuple[tuple[str, str, float], ...]:
    loaders = {"lee": _lee_pairs, "wordsim353": lambda: _word_pairs("wordsim353.tsv"),
               "simlex999": lambda: _word_pairs("simlex999.txt")}
    if name not in loaders:
        raise ValueError(f"unknown STS set {name!r}; choose one of {', '.join(STS_NAMES)}")
    return tuple(loaders[name]())


def load_sts(name: str, n: int | None = None, seed: int = 0) -> STSSet:
    """An STS set, optionally a seeded sample of ``n`` pairs (smoke runs)."""
    pairs = list(_all_pairs(name))
    if n is not None and n < len(pairs):
        pairs = random.Random(seed).sample(pairs, n)
    return STSSet(name, tuple(pairs))
