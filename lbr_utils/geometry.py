"""The geometry of an embedding space: anisotropy, and when similarity functions disagree.

LLM hidden states are *anisotropic*: they crowd into a narrow cone, so any two texts have a high
cosine and the useful signal lives in small differences (Ethayarajh, 2019). A mean cosine of random
pairs near 1 is the symptom; subtracting the mean vector is the cheapest remedy.
"""

from __future__ import annotations

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.clip(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12, None)


def dense_scores(embed, questions, documents) -> np.ndarray:
    """Cosine similarity of every question with every document under ``embed`` (texts -> vectors)."""
    return _unit(np.asarray(embed(list(questions)))) @ _unit(np.asarray(embed(list(documents)))).T


def anisotropy(vectors: np.ndarray, n_pairs: int = 2000, seed: int = 0) -> float:
    """Mean cosine similarity of random pairs of distinct rows (0 for an isotropic space)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    if n < 2:
        raise ValueError("anisotropy needs at least two vectors")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n  # never i itself
    u = _unit(vectors)
    return float(np.mean(np.sum(u[i] * u[j], axis=1)))


def center(vectors: np.ndarray) -> np.ndarray:
    """Subtract the mean vector: removes the common direction that makes every cosine high."""
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors - vectors.mean(0, keepdims=True)


def top1_agreement(queries: np.ndarray, docs: np.ndarray) -> dict[str, float]:
    """How often cosine, dot product and Euclidean distance pick the same best document.

    On unit-norm vectors the three rank identically; they part ways only as far as document norms
    differ, which the coefficient of variation of the norms summarises.
    """
    q, d = np.asarray(queries, np.float64), np.asarray(docs, np.float64)
    dot = q @ d.T
    cos = _unit(q) @ _unit(d).T
    euc = -np.linalg.norm(q[:, None, :] - d[None, :, :], axis=-1)
    best = {name: m.argmax(1) for name, m in {"cosine": cos, "dot": dot, "euclidean": euc}.items()}
    norms = np.linalg.norm(d, axis=1)
    return {"cosine=dot": float(np.mean(best["cosine"] == best["dot"])),
            "cosine=euclidean": float(np.mean(best["cosine"] == best["euclidean"])),
            "doc_norm_cv": float(norms.std() / norms.mean())}


def separation_ratio(queries: np.ndarray, positives: np.ndarray) -> float:
    """How far an untrained-for-retrieval embedding already separates a query's own document from
    the others, in units of the spread of the others:

        SR = (mean cos(q_i, d_i) - mean_{j != i} cos(q_i, d_j)) / std_{j != i} cos(q_i, d_j)

    The LBR paper names a "Separation Ratio" that should predict what generative learning buys
    before contrastive learning, but does not define it. This is our definition: a d'-style
    signal-to-noise ratio. Dividing by the negatives' spread makes it blind to anisotropy (a space
    where every cosine is 0.99 but positives sit 3 standard deviations above is well separated).
    """
    q, d = _unit(np.asarray(queries, np.float64)), _unit(np.asarray(positives, np.float64))
    if q.shape != d.shape or len(q) < 2:
        raise ValueError("need at least two (query, positive) pairs of equal shape")
    sims = q @ d.T
    pos = np.diag(sims)
    neg = sims[~np.eye(len(q), dtype=bool)]
    return float((pos.mean() - neg.mean()) / max(neg.std(), 1e-12))
