"""LLM-synthesised training data: an instruction LLM writes queries, paraphrases and hard negatives.

The generator is an interface (``generate(prompts) -> texts``): any local Hugging Face causal LM with
a chat template works (SmolLM2-135M-Instruct by default), and nothing here needs an API. The
consistency filter (Dai et al., 2022, Promptagator; also InPars) keeps a synthetic query only if the
document it was written for ranks first for it, which throws out queries too vague to be useful.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import QARecord
from .geometry import dense_scores
from .text import jaccard, words

# Few-shot prompts as chat turns: the examples are earlier user/assistant exchanges, so the model's
# own turn is the answer itself. (Packed into one user message, SmolLM2-135M continued the pattern
# with a new "Text: ..." block, i.e. it copied the document instead of writing a query.)
FEW_SHOT = {
    "query": ("Write a short search query that a person would type to find the text. Reply with the query only.",
              # The last example is what SmolLM2-135M echoes most: a medical one there began a quarter of
              # its medical queries ("adult onset diabetes ..."), so the last is from another domain.
              [("Fracture of humerus", "broken upper arm bone"),
               ("Type 2 diabetes mellitus without complications", "adult onset diabetes no complications"),
               ("sorted(iterable) returns a new sorted list", "python sort a list")]),
    "paraphrase": ("Rewrite the term in other words with the same meaning. Reply with the rewrite only.",
                   [("heart attack", "myocardial infarction"), ("broken arm", "fracture of the arm")]),
    # A sibling, not a variant: asked for "similar but different", SmolLM2-135M mostly returned the text
    # itself (a false negative); the examples here change the entity, not a word of it.
    "negative": ("Name a different thing of the same kind: a sibling, not a variant of the text. Reply with the "
                 "name only.",
                 [("Fracture of humerus", "Dislocation of shoulder joint"),
                  ("Type 2 diabetes mellitus without complications", "Hypothyroidism, unspecified"),
                  ("sorted(iterable) returns a new sorted list", "reversed(seq) returns a reverse iterator")]),
}
_ANSWER_LABELS = ("query:", "rewrite:", "similar but different:", "search query:", "text:")


def chat_prompt(kind: str, text: str) -> list[dict[str, str]]:
    """The few-shot conversation asking for one ``kind`` of output about ``text``."""
    instruction, examples = FEW_SHOT[kind]
    messages = []
    for i, (example_in, example_out) in enumerate(examples):
        content = f"{instruction}\n\n{example_in}" if i == 0 else example_in
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": example_out}]
    return messages + [{"role": "user", "content": text}]


def clean_generation(text: str) -> str:
    """First line of a generation, without quotes or a repeated answer label."""
    line = text.strip().split("\n")[0].strip()
    for label in _ANSWER_LABELS:
        if line.lower().startswith(label):
            line = line[len(label):].strip()
    return line.strip('"').strip()


Prompt = str | list[dict[str, str]]  # a user message, or a whole conversation


class Generator(Protocol):
    def generate(self, prompts: Sequence[Prompt]) -> list[str]: ...


@dataclass
class HFGenerator:
    """Greedy (or sampled) generation from a local chat model, batched with left padding."""

    model: object
    tokenizer: object
    max_new_tokens: int = 24
    batch_size: int = 16
    do_sample: bool = False
    bf16: bool = False  # bf16 autocast: faster prefill on CPUs with AMX/AVX512-BF16
    show_progress: bool = False
    stats: dict = field(default_factory=lambda: {"prompts": 0, "new_tokens": 0, "seconds": 0.0})

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt]) -> list[str]:
        if not prompts:
            raise ValueError("generate() got no prompts")
        tok, out = self.tokenizer, []
        side, tok.padding_side = tok.padding_side, "left"  # generation continues from the right edge
        start = time.perf_counter()
        try:
            for s in tqdm(range(0, len(prompts), self.batch_size), desc="generate", disable=not self.show_progress):
                chats = [[{"role": "user", "content": p}] if isinstance(p, str) else p
                         for p in prompts[s:s + self.batch_size]]
                texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
                batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                with torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    ids = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=self.do_sample,
                                              pad_token_id=tok.pad_token_id)
                new = ids[:, batch["input_ids"].shape[1]:]
                self.stats["new_tokens"] += int((new != tok.pad_token_id).sum())
                out += [clean_generation(t) for t in tok.batch_decode(new, skip_special_tokens=True)]
        finally:
            tok.padding_side = side
        self.stats["prompts"] += len(prompts)
        self.stats["seconds"] += time.perf_counter() - start
        return out


def synthesise_queries(generator: Generator, records: Sequence[QARecord]) -> list[QARecord]:
    """doc2query: one synthetic question per distinct answer; empty generations are dropped."""
    answers = {r.answer: r for r in records}
    generated = generator.generate([chat_prompt("query", a) for a in answers])
    return [QARecord(id=f"{r.id}-synq", domain=r.domain, question=q, answer=a, entity=r.entity, group=r.group)
            for (a, r), q in zip(answers.items(), generated) if q and q.lower() != a.lower()]


def synthesise_paraphrases(generator: Generator, records: Sequence[QARecord]) -> list[QARecord]:
    """A paraphrased question per record: a second positive for the same answer."""
    generated = generator.generate([chat_prompt("paraphrase", r.question) for r in records])
    return [QARecord(id=f"{r.id}-para", domain=r.domain, question=p, answer=r.answer, entity=r.entity, group=r.group)
            for r, p in zip(records, generated) if p and p.lower() != r.question.lower()]


def synthesise_negatives(generator: Generator, records: Sequence[QARecord]) -> list[str]:
    """One look-alike but wrong passage per record (a synthetic hard negative)."""
    return generator.generate([chat_prompt("negative", r.answer) for r in records])


def own_ranks(scores: np.ndarray, own: Sequence[int]) -> np.ndarray:
    """Rank of each row's own document (1 = first) in a (questions x documents) score matrix; a tie
    with the own document counts in its favour."""
    scores = np.asarray(scores)
    own_scores = scores[np.arange(len(scores)), np.asarray(own)]
    return 1 + (scores > own_scores[:, None]).sum(1)


def bm25_scores(questions: Sequence[str], documents: Sequence[str]) -> np.ndarray:
    """BM25 score of every question against every document: a judge of a synthetic query that shares
    nothing with the dense filter."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(documents), stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize(list(questions), stopwords="en", show_progress=False, return_ids=False)
    return np.stack([retriever.get_scores(t) if t else np.zeros(len(documents)) for t in tokens])


def _pool_index(records: Sequence[QARecord], pool: Sequence[str] | None) -> tuple[list[str], list[int]]:
    pool = list(dict.fromkeys(pool if pool is not None else [r.answer for r in records]))
    index = {a: i for i, a in enumerate(pool)}
    missing = [r.answer for r in records if r.answer not in index]
    if missing:
        raise ValueError(f"{len(missing)} answers are not in the candidate pool")
    return pool, [index[r.answer] for r in records]


def consistency_filter(embed, records: Sequence[QARecord], pool: Sequence[str] | None = None) -> list[QARecord]:
    """Keep a record only if its own answer is the top-ranked document for its question.

    ``embed`` is any ``texts -> vectors`` function; ``pool`` is the candidate documents (default: the
    records' own distinct answers).
    """
    if not records:
        return []
    pool, own = _pool_index(records, pool)
    ranks = own_ranks(dense_scores(embed, [r.question for r in records], pool), own)
    return [r for r, rank in zip(records, ranks) if rank == 1]


# What a small writer gets wrong, caught before training: near-copies posing as negatives, and
# degenerate repetitions posing as queries.

# A unit of 2-8 characters repeated at least four times in a row ("A.A.A.A.", "-11-11-11-11"), one of 3-8
# three times (a loop cut short by the token limit: "(IVA-IVA-IVA-"), or one punctuation mark six times:
# "10000" or an ellipsis "...." stay ordinary text.
_REPEATED_UNIT = re.compile(r"(.{2,8}?)\1{3,}|(.{3,8}?)\2{2,}|([^\w\s])\3{5,}")


def _repeats_a_phrase(tokens: list[str]) -> bool:
    """Does a phrase of two or more words follow itself ("use, unspecified, use, unspecified")?"""
    return any(tokens[i:i + n] == tokens[i + n:i + 2 * n]
               for n in range(2, len(tokens) // 2 + 1) for i in range(len(tokens) - 2 * n + 1))


def degenerate(text: str, min_distinct: float = 0.5) -> bool:
    """True for a generation that loops instead of writing: a short unit repeated four or more times
    in a row ("A.A.A.A.", "-11-11-11-11"), a phrase of words said twice in a row, or fewer than
    ``min_distinct`` of its words distinct (words without their punctuation: "use," is "use").
    A code such as "Z00.00" or a number such as "10000" is not a loop."""
    tokens = re.findall(r"\w+", text.lower())
    return (bool(_REPEATED_UNIT.search(text)) or _repeats_a_phrase(tokens)
            or (len(tokens) >= 4 and len(set(tokens)) / len(tokens) < min_distinct))


def _word_grams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = re.findall(r"\w+", text.lower())
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def echoes_example(text: str, document: str, kind: str = "query", n: int = 3) -> bool:
    """Does ``text`` repeat a few-shot example's answer (``n`` words in a row of it) that its own
    document does not hold? A small writer copies the prompt's last answer into queries for unrelated
    documents ("adult onset diabetes with excess of blasts" for an anaemia); a query about a diabetes
    card may say "adult onset diabetes" and is not an echo."""
    examples = set().union(*(_word_grams(answer, n) for _, answer in FEW_SHOT[kind][1]))
    return bool((_word_grams(text, n) & examples) - _word_grams(document, n))


def near_copies(negatives: Sequence[str], positives: Sequence[str], threshold: float = 0.7,
                contained: bool = False) -> list[bool]:
    """For each (negative, positive) pair: is the "negative" the positive again, near enough (word
    Jaccard >= ``threshold``; "Fracture of the humerus" for "Fracture of humerus" is 0.75)? Such a
    negative teaches the model to push the right answer away. With ``contained``, a negative that adds
    no word of its own is a copy too: a span of a long positive ("Cholera due to Vibrio cholerae 01"
    for its whole ICD card) has a low Jaccard with it but is still the positive. (A *query* made of the
    document's words is a fair query, so the query check leaves ``contained`` off.)"""
    if len(negatives) != len(positives):
        raise ValueError("need one positive per negative")
    return [jaccard(n, p) >= threshold or (contained and bool(words(n)) and words(n) <= words(p))
            for n, p in zip(negatives, positives)]


def mined_negatives(queries: Sequence[QARecord], pool: Sequence[QARecord], threshold: float = 0.7) -> list[str]:
    """A hard negative for each synthetic query: the answer BM25 ranks highest for it among ``pool``
    that belongs to another entity and is not a near-copy of the query's own answer. Unlike a
    generated look-alike, it is a real text of the domain and never the positive in disguise."""
    import bm25s

    answers = [r.answer for r in pool]
    if not answers:
        raise ValueError("no answers to mine negatives from")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(answers, stopwords="en", show_progress=False), show_progress=False)
    hits, _ = retriever.retrieve(bm25s.tokenize([q.question for q in queries], stopwords="en", show_progress=False),
                                 k=min(20, len(answers)), show_progress=False)
    out = []
    for q, row in zip(queries, hits):
        ok = [answers[int(j)] for j in row if pool[int(j)].entity != q.entity
              and not near_copies([answers[int(j)]], [q.answer], threshold, contained=True)[0]]
        out.append(ok[0] if ok else next(a for r, a in zip(pool, answers) if r.entity != q.entity))
    return out
