"""The unified QA format and the three disjoint splits every domain is cut into.

Following the paper, every domain becomes question/answer records; the records of an *entity* (a
drug, an ICD-10-CM code, a function) all land in one split, so an evaluation query, its answer and
every other name of the same entity stay out of training. What generative learning can still teach
is the domain itself: its naming conventions, its vocabulary, its neighbouring entities.
"""

from __future__ import annotations

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
    """Generative-learning, contrastive-learning and evaluation data of one domain."""

    domain: str
    gl: list[QARecord]
    cl: list[QARecord]
    eval: RetrievalSet
    eval_records: list[QARecord] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {"gl": len(self.gl), "cl": len(self.cl), "eval_queries": len(self.eval.queries),
                "eval_corpus": len(self.eval.corpus)}


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


def split_by_entity(records: list[QARecord], n_gl: int, n_cl: int, n_eval: int,
                    n_distractors: int, seed: int, max_per_entity: int = 3) -> DomainSplits:
    """Cut records into GL / CL / eval with disjoint entities, deterministically by ``seed``.

    Evaluation takes one query per entity (so each query has exactly one relevant document); its
    corpus adds ``n_distractors`` answers of training entities, as the paper's isolated evaluation
    sets hold distractors. GL and CL take up to ``max_per_entity`` records per entity.
    """
    if not records:
        raise ValueError("no records to split: the domain's source data came back empty")
    domain = records[0].domain
    by_entity: dict[str, list[QARecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.id):
        by_entity[r.entity].append(r)
    entities = sorted(by_entity)
    rng = random.Random(seed)
    rng.shuffle(entities)
    for e in entities:
        rng.shuffle(by_entity[e])

    it = iter(entities)
    eval_records = [by_entity[e][0] for e, _ in zip(it, range(n_eval))]
    if len(eval_records) < n_eval:
        raise ValueError(f"{domain}: only {len(eval_records)} entities for {n_eval} evaluation queries")

    def take(n: int) -> list[QARecord]:
        out: list[QARecord] = []
        for e in it:
            if len(out) >= n:
                break
            out.extend(by_entity[e][: min(max_per_entity, n - len(out))])
        return out

    cl = take(n_cl)
    gl = take(n_gl)
    if len(cl) < n_cl or len(gl) < n_gl:
        raise ValueError(f"{domain}: not enough data for {n_cl} CL / {n_gl} GL records "
                         f"(got {len(cl)} / {len(gl)}); lower the profile's sizes")

    # Distractors: answers of training entities, not repeated, drawn with the same seed.
    train_answers = sorted({(r.entity, r.answer) for r in gl + cl})
    distractors = rng.sample(train_answers, min(n_distractors, len(train_answers)))
    corpus = {f"d-{r.entity}": r.answer for r in eval_records}
    corpus.update({f"x-{i}": a for i, (_, a) in enumerate(distractors)})
    queries = {f"q-{r.id}": r.question for r in eval_records}
    qrels = {f"q-{r.id}": {f"d-{r.entity}": 1} for r in eval_records}
    return DomainSplits(domain, gl, cl, RetrievalSet(queries, corpus, qrels), eval_records)


def leakage(splits: DomainSplits) -> dict[str, list[str]]:
    """What of the evaluation set appears in training: queries, answers, pairs, entities.

    Returns a dict of non-empty findings (an empty dict means no leakage). Comparison is on
    whitespace- and case-normalised text, so a leak is not hidden by capitalisation.
    """
    train = splits.gl + splits.cl
    train_texts = {_norm(r.question) for r in train} | {_norm(r.answer) for r in train}
    train_pairs = {(_norm(r.question), _norm(r.answer)) for r in train}
    train_entities = {r.entity for r in train}
    found = {
        "queries": [r.question for r in splits.eval_records if _norm(r.question) in train_texts],
        "answers": [r.answer for r in splits.eval_records if _norm(r.answer) in train_texts],
        "pairs": [r.question for r in splits.eval_records
                  if (_norm(r.question), _norm(r.answer)) in train_pairs],
        "entities": [r.entity for r in splits.eval_records if r.entity in train_entities],
        "gl_cl_entities": sorted({r.entity for r in splits.gl} & {r.entity for r in splits.cl}),
    }
    return {k: v for k, v in found.items() if v}
