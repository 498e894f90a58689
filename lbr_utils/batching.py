"""Deterministic batches: which examples a training step sees is a pure function of the step.

Every training loop here (contrastive, IB-GL, the compressor, the inverter) takes ``batch_at(step)``
from one of these, so a resumed or re-run job sees exactly the batches it would have seen, and two
arms of a comparison can be fed identical data.
"""

from __future__ import annotations

import random

from .data import QARecord


class IndexBatcher:
    """``indices(step)``: which of ``n`` examples make up the batch of ``step``; an epoch is a seeded
    permutation, so any step's batch is known without replaying the ones before it (resumable runs)."""

    def __init__(self, n: int, batch_size: int, seed: int = 0) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"need at least one example and a batch size >= 1, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size, self.seed = n, min(batch_size, n), seed
        self.per_epoch = n // self.batch_size

    def indices(self, step: int) -> list[int]:
        epoch, i = divmod(step, self.per_epoch)
        order = list(range(self.n))
        random.Random(self.seed * 100_003 + epoch).shuffle(order)
        return order[i * self.batch_size:(i + 1) * self.batch_size]


class PairBatcher(IndexBatcher):
    """``batch_at(step)``: a deterministic batch of pairs; an epoch is a seeded permutation."""

    def __init__(self, records: list[QARecord], batch_size: int, seed: int = 0,
                 negatives: list[list[int]] | None = None) -> None:
        if len(records) < 2:
            raise ValueError("contrastive training needs at least two pairs (in-batch negatives)")
        super().__init__(len(records), batch_size, seed)
        self.records, self.negatives = records, negatives

    def __call__(self, step: int) -> dict:
        idx = self.indices(step)
        batch = {"queries": [self.records[j].question for j in idx], "positives": [self.records[j].answer for j in idx],
                 "groups": [self.records[j].entity for j in idx]}
        if self.negatives is not None:
            neg = [n for j in idx for n in self.negatives[j]]
            batch["negatives"] = [self.records[n].answer for n in neg]
            batch["negative_groups"] = [self.records[n].entity for n in neg]
        return batch
