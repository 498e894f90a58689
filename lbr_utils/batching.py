"""Deterministic batches, and how a batch's rows are packed.

Every training loop here (contrastive, IB-GL, the compressor, the inverter) takes ``batch_at(step)``
from one of these, so a resumed or re-run job sees exactly the batches it would have seen, and two
arms of a comparison can be fed identical data. :func:`pack_rows` decides which examples share a
packed row (LBR's generative batches and the contrastive encoder use it).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
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


def pack_rows(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Group rows of the given lengths into packed rows of at most ``width`` tokens (first fit, in
    order of decreasing length); a row longer than ``width`` gets a packed row of its own. Packing
    turns the padding of a batch of short, uneven rows into real tokens."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fit = next((b for b, free in enumerate(room) if lengths[i] <= free), None)
        if fit is None:
            bins.append([i])
            room.append(width - lengths[i])
        else:
            bins[fit].append(i)
            room[fit] -= lengths[i]
    return bins
