"""The unified QA format and the three disjoint splits every domain is cut into.

Following the paper, every domain becomes question/answer records; the records of an *entity* (a
drug, an ICD-10-CM code, a function) all land in one split, so an evaluation query, its answer and
every other name of the same entity stay out of training. What generative learning can still teach
is the domain itself: its naming conventions, its vocabulary, its neighbouring entities.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class QARecord:
    """One question/answer pair. ``entity`` keys the split; ``group`` links related entities
    (an ICD parent code, a Python module) so later chapters can mine hard negatives from it."""

    id: str
    domain: str
    question: str
    answer: str
    entity: str
    group: str = ""


@dataclass
class RetrievalSet:
    """An isolated retrieval task in the mteb layout: queries, corpus and graded relevance."""

    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def __post_init__(self) -> None:
        if not self.queries or not self.corpus:
            raise ValueError("a retrieval set needs at least one query and one document")
        missing = {d for rel in self.qrels.values() for d in rel} - self.corpus.keys()
        if missing:
            raise ValueError(f"qrels point at documents missing from the corpus: {sorted(missing)[:5]}")


@dataclass
class DomainSplits:
    """Generative-learning, contrastive-learning, development and evaluation data of one domain.

    ``dev`` is scored during training (when to stop, which step is best); ``eval`` is touched once, at
    the end. Both corpora hold their own queries' answers plus distractors from a held-out pool of
    entities that no training split touches."""

    domain: str
    gl: list[QARecord]
    cl: list[QARecord]
    eval: RetrievalSet
    eval_records: list[QARecord] = field(default_factory=list)
    dev: RetrievalSet | None = None
    dev_records: list[QARecord] = field(default_factory=list)
    distractor_records: list[QARecord] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {"gl": len(self.gl), "cl": len(self.cl), "dev_queries": len(self.dev.queries) if self.dev else 0,
                "eval_queries": len(self.eval.queries), "eval_corpus": len(self.eval.corpus)}


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def deduplicate(records: Iterable[QARecord]) -> list[QARecord]:
    """Drop ambiguous records: a question (or an answer) shared by two entities, and repeated pairs.

    A question naming two entities would make a retrieval query with two right answers that the
    qrels list as one, and an answer shared across entities would leak an evaluation answer into
    training through its twin.
    """
    records = list(records)
    q_entities: dict[str, set[str]] = defaultdict(set)
    a_entities: dict[str, set[str]] = defaultdict(set)
    for r in records:
        q_entities[_norm(r.question)].add(r.entity)
        a_entities[_norm(r.answer)].add(r.entity)
    seen: set[tuple[str, str]] = set()
    out = []
    for r in records:
        key = (_norm(r.question), _norm(r.answer))
        if len(q_entities[key[0]]) > 1 or len(a_entities[key[1]]) > 1 or key in seen:
            continue
        if key[0] == key[1] or not key[0] or not key[1]:
            continue
        seen.add(key)
        out.append(r)
    return out


def split_by_entity(records: list[QARecord], n_gl: int, n_cl: int, n_eval: int, n_distractors: int, seed: int,
                    n_dev: int = 0, max_per_entity: int = 3, unit: str = "entity") -> DomainSplits:
    """Cut records into GL / CL / dev / eval with disjoint entities, deterministically by ``seed``.

    Evaluation and dev take one query per entity (so each query has exactly one relevant document).
    Their corpora add distractors: one answer each of ``n_distractors`` (eval) and ``n_dev`` (dev; a
    dev set is scored every few training steps, so it is kept small) entities of a held-out pool that
    no training split touches, so a distractor is never a text the model trained on. GL and CL take up to ``max_per_entity`` records per entity.

    ``unit="group"`` assigns whole groups (a Python module) to one split, and then drops evaluation
    and dev records whose name (the entity's second field, a function name) occurs in training: a
    query must not be answerable by recalling a same-named training function.
    """
    if not records:
        raise ValueError("no records to split: the domain's source data came back empty")
    if unit not in ("entity", "group"):
        raise ValueError(f"unit must be 'entity' or 'group', got {unit!r}")
    domain = records[0].domain
    by_entity: dict[str, list[QARecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.id):
        by_entity[r.entity].append(r)
    rng = random.Random(seed)
    if unit == "entity":
        entities = sorted(by_entity)
        rng.shuffle(entities)
    else:  # whole groups, in a seeded order; entities within a group in a seeded order too
        groups: dict[str, list[str]] = defaultdict(list)
        for e in sorted(by_entity):
            groups[by_entity[e][0].group].append(e)
        order = sorted(groups)
        rng.shuffle(order)
        entities = []
        for g in order:
            rng.shuffle(groups[g])
            entities += groups[g]
    for e in entities:
        rng.shuffle(by_entity[e])
    group_of = {e: by_entity[e][0].group for e in entities}

    it = iter(entities)
    position = {e: i for i, e in enumerate(entities)}

    def group_ends(e: str) -> bool:
        i = position[e] + 1
        return unit == "entity" or i >= len(entities) or group_of[entities[i]] != group_of[e]

    def take_entities(n: int) -> list[str]:
        """The next ``n`` entities; under ``unit="group"`` the rest of the last group is used up
        (and left out), so no group is shared between splits."""
        out: list[str] = []
        for e in it:
            if len(out) < n:
                out.append(e)
            if len(out) >= n and group_ends(e):
                break
        return out

    def take_records(n: int) -> list[QARecord]:
        """Up to ``max_per_entity`` records of each next entity until there are ``n`` (groups as above)."""
        out: list[QARecord] = []
        for e in it:
            out.extend(by_entity[e][:max(0, min(max_per_entity, n - len(out)))])
            if len(out) >= n and group_ends(e):
                break
        return out

    # Under unit="group" some evaluation / dev queries are dropped below (a same-named function in
    # training): draw half again as many, then keep the first n.
    draw = 1.5 if unit == "group" else 1.0
    eval_records = [by_entity[e][0] for e in take_entities(math.ceil(draw * n_eval))]
    dev_records = [by_entity[e][0] for e in take_entities(math.ceil(draw * n_dev))] if n_dev else []
    pool = [by_entity[e][0] for e in take_entities(n_distractors + n_dev)] if n_distractors else []
    cl = take_records(n_cl)
    gl = take_records(n_gl)
    if len(cl) < n_cl or len(gl) < n_gl:
        raise ValueError(f"{domain}: not enough data for {n_cl} CL / {n_gl} GL records "
                         f"(got {len(cl)} / {len(gl)}); lower the profile's sizes")
    if unit == "group":
        trained = {r.entity.split(":")[1] for r in gl + cl}
        eval_records = [r for r in eval_records if r.entity.split(":")[1] not in trained]
        dev_records = [r for r in dev_records if r.entity.split(":")[1] not in trained]
    if len(eval_records) < n_eval or len(dev_records) < n_dev:
        raise ValueError(f"{domain}: only {len(eval_records)} entities for {n_eval} evaluation queries "
                         f"and {len(dev_records)} for {n_dev} dev queries")
    eval_records, dev_records = eval_records[:n_eval], dev_records[:n_dev]
    eval_pool, dev_pool = pool[:n_distractors], pool[n_distractors:]
    return DomainSplits(domain, gl, cl, _retrieval_set(eval_records, eval_pool), eval_records,
                        _retrieval_set(dev_records, dev_pool) if dev_records else None, dev_records, pool)


def _retrieval_set(queries: list[QARecord], distractors: list[QARecord]) -> RetrievalSet:
    """Queries with one relevant document each, in a corpus with the distractors' answers."""
    corpus = {f"d-{r.entity}": r.answer for r in queries}
    corpus.update({f"x-{r.entity}": r.answer for r in distractors})
    return RetrievalSet({f"q-{r.id}": r.question for r in queries}, corpus,
                        {f"q-{r.id}": {f"d-{r.entity}": 1} for r in queries})


def leakage(splits: DomainSplits) -> dict[str, list[str]]:
    """What of the evaluation and dev sets (queries, answers, distractors) appears in training.

    Returns a dict of non-empty findings (an empty dict means no leakage). Comparison is on
    whitespace- and case-normalised text, so a leak is not hidden by capitalisation.
    """
    train = splits.gl + splits.cl
    train_texts = {_norm(r.question) for r in train} | {_norm(r.answer) for r in train}
    train_pairs = {(_norm(r.question), _norm(r.answer)) for r in train}
    train_entities = {r.entity for r in train}
    held_out = splits.eval_records + splits.dev_records
    found = {
        "queries": [r.question for r in held_out if _norm(r.question) in train_texts],
        "answers": [r.answer for r in held_out if _norm(r.answer) in train_texts],
        "pairs": [r.question for r in held_out if (_norm(r.question), _norm(r.answer)) in train_pairs],
        "entities": [r.entity for r in held_out if r.entity in train_entities],
        "distractors": [r.answer for r in splits.distractor_records
                        if r.entity in train_entities or _norm(r.answer) in train_texts],
        "eval_dev_entities": sorted({r.entity for r in splits.eval_records} & {r.entity for r in splits.dev_records}),
        "gl_cl_entities": sorted({r.entity for r in splits.gl} & {r.entity for r in splits.cl}),
    }
    return {k: v for k, v in found.items() if v}
