"""Words of a text, and how much two texts share: the unit chapter 4 checks synthetic negatives in
and chapter 7 scores recovered text with (a dotted code like ``T85.625`` stays one word)."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9](?:[a-z0-9.]*[a-z0-9])?")


def words(text: str) -> set[str]:
    """The distinct lower-cased words of ``text`` (letters and digits, dotted codes kept whole)."""
    return set(_WORD.findall(text.lower()))


def set_scores(guessed: set[str], true: set[str]) -> dict[str, float]:
    """Precision, recall and F1 of a guessed word set against the true one."""
    hit = len(guessed & true)
    p = hit / len(guessed) if guessed else 0.0
    r = hit / len(true) if true else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if hit else 0.0}


def jaccard(a: str, b: str) -> float:
    """Shared words over all words of the two texts (1: the same words, 0: none in common)."""
    wa, wb = words(a), words(b)
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0
