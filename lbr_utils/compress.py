"""Long-context compression with bottleneck (gist) tokens: chapter 6.

The LBR mask read the other way round: a passage ``x`` is squeezed into ``k`` bottleneck tokens, and
whatever comes after (a reconstruction of ``x``, or a question and its answer) sees only those ``k``
states (Mu et al., 2023, gist tokens). At inference the passage can then be dropped from the KV cache:
the model decodes from ``k`` entries instead of ``len(x)``.

One model is trained on a mix of three ways to read a passage, so each is a fair, trained baseline
for the others at the same token budget ``k = ceil(len(x) / r)``:

* ``compressed``: ``[x, B, ...]`` under the bottleneck mask, ``r`` drawn per example from the sweep;
* ``truncated``: the first ``k`` tokens of ``x``, read normally;
* ``full``: all of ``x``, read normally (no budget: the ceiling).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch

from .batching import IndexBatcher
from .data import QARecord
from .generate import generation_scores, greedy_generate
from .lbr import build_generative_batch, target_token_losses
from .masks import bottleneck_count
from .models import add_bottleneck_tokens
from .pooling import bos_ids, token_ids
from .train import TrainConfig, TrainResult, train

MODES = ("compressed", "truncated", "full")
TASKS = ("reconstruct", "qa")
# What follows the (possibly compressed) passage when the task is to write it again. Without it a
# plainly read passage runs straight into its copy, and a model trained on truncated prefixes (where
# the copy starts after k tokens) learns to *continue* a passage rather than restart it: the full
# passage, the ceiling, then scored below truncation. The prompt marks the start of the answer in
# every mode, as the question does for QA (and the bottleneck tokens do not need to).
RECONSTRUCT_PROMPT = " Repeat the text:"


@dataclass(frozen=True)
class Example:
    """A passage, and for QA a question about it with its short answer."""

    passage: str
    question: str = ""
    answer: str = ""

    @property
    def task(self) -> str:
        return "qa" if self.question else "reconstruct"

    @property
    def prompt(self) -> str:
        """What is read after the passage, before the answer: the question, or the repeat prompt."""
        return self.question or RECONSTRUCT_PROMPT

    @property
    def target(self) -> str:
        return self.answer if self.task == "qa" else self.passage


def _fact(record: QARecord) -> tuple[str, str, str] | None:
    """(fact text, question, answer) for records whose answer card names a code or a formula."""
    if record.domain == "medical" and " (ICD-10-CM " in record.answer:
        name = record.answer.split(" (ICD-10-CM ")[0]
        return record.answer, f" Question: What is the ICD-10-CM code of {name}? Answer:", f" {record.entity}"
    if record.domain == "chemistry" and record.group not in ("", "drug"):
        return record.answer, f" Question: What is the molecular formula of {record.entity}? Answer:", f" {record.group}"
    return None


def qa_examples(records: list[QARecord], n: int, facts_per_passage: int = 3, seed: int = 0) -> list[Example]:
    """``n`` passages of ``facts_per_passage`` distinct facts, each asking about one of them (a
    random position, so truncation cannot simply keep the answer)."""
    facts = list({f[0]: f for r in records if (f := _fact(r))}.values())
    if len(facts) < facts_per_passage:
        raise ValueError(f"need at least {facts_per_passage} fact records, got {len(facts)}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chosen = rng.sample(facts, facts_per_passage)
        asked = rng.choice(chosen)
        out.append(Example(" ".join(f[0] for f in chosen), asked[1], asked[2]))
    return out


def truncate(tokenizer, passage: str, k: int) -> str:
    """The first ``k`` tokens of ``passage`` (the same budget a bottleneck of ``k`` tokens gets)."""
    return tokenizer.decode(token_ids(tokenizer, passage)[:k])


def as_training_row(tokenizer, example: Example, mode: str, ratio: float, max_input: int) -> tuple[tuple, float | None]:
    """(the ``build_generative_batch`` example ``(passage, prompt, target)``, its ratio or None) for
    one way of reading it."""
    passage = example.passage
    if mode == "truncated":
        n = len(bos_ids(tokenizer)) + len(token_ids(tokenizer, passage)[:max_input])
        passage = truncate(tokenizer, passage, bottleneck_count(n, ratio))
    return (passage, example.prompt, example.target), (ratio if mode == "compressed" else None)


@dataclass(frozen=True)
class CompressionConfig:
    ratios: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 32.0)
    steps: int = 100
    batch_size: int = 16
    lr: float = 5e-5
    max_input: int = 96  # three medical facts fit
    max_target: int = 64
    seed: int = 0
    # Curriculum: the first steps draw reconstruction examples only (learn to put the passage into
    # the bottleneck before learning to answer from it); then every example is drawn.
    reconstruction_steps: int = 0
    eval_every: int = 0  # score the dev examples every this many steps (a learning curve)
    dev_ratio: float = 8.0  # the ratio the learning curve reads
    # Share of training rows read at ``dev_ratio`` (the ratio a chapter judges); the rest draw their
    # ratio uniformly. Mode and ratio are drawn independently, so compressed and truncated stay matched.
    focus_share: float = 0.0

    def __post_init__(self) -> None:
        if not self.ratios or min(self.ratios) <= 0:
            raise ValueError(f"compression ratios must be > 0, got {self.ratios}")
        if not 0 <= self.focus_share <= 1:
            raise ValueError(f"focus_share is a share of rows, in [0, 1]; got {self.focus_share}")

    @property
    def max_bottleneck(self) -> int:
        return math.ceil((self.max_input + 1) / min(self.ratios))


def curriculum(examples: list[Example], cfg: CompressionConfig) -> Callable[[int], list[Example]]:
    """The examples of each step: reconstruction ones only for the first ``cfg.reconstruction_steps``
    steps, then all of them (each phase walks through its own shuffled epochs)."""
    first = [e for e in examples if e.task == "reconstruct"]
    if cfg.reconstruction_steps and not first:
        raise ValueError("a reconstruction-first curriculum needs reconstruction examples")
    early = IndexBatcher(len(first) or 1, cfg.batch_size, cfg.seed)
    late = IndexBatcher(len(examples), cfg.batch_size, cfg.seed)

    def at(step: int) -> list[Example]:
        if step < cfg.reconstruction_steps:
            return [first[i] for i in early.indices(step)]
        return [examples[i] for i in late.indices(step - cfg.reconstruction_steps)]
    return at


def draw_reading(rng: random.Random, cfg: CompressionConfig) -> tuple[str, float]:
    """A training row's reading: a mode, uniformly; then, independently, a ratio: ``cfg.dev_ratio``
    for a ``cfg.focus_share`` of rows, else one of ``cfg.ratios`` uniformly."""
    mode = rng.choice(MODES)
    return mode, cfg.dev_ratio if rng.random() < cfg.focus_share else rng.choice(cfg.ratios)


def example_mean_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each row's mean next-token loss over its target, averaged over rows: every example weighs the
    same. A mean over all target tokens would give a QA row (a code of about 7 tokens) a fifth of a
    reconstruction row's say (a card of about 32), and a mixed batch would mostly teach reconstruction."""
    losses, targets = target_token_losses(model, batch), (batch["labels"] != -100)
    per_row = losses.sum(1) / targets.sum(1).clamp(min=1)
    return per_row[targets.any(1)].mean()


def train_compressor(model, tokenizer, examples: list[Example], cfg: CompressionConfig, show_progress: bool = True,
                     dev: Mapping[str, list[Example]] | None = None) -> TrainResult:
    """Full fine-tuning on the three reading modes, a mode and ratio drawn per example and step, in
    the order of :func:`curriculum`, every example weighing the same (:func:`example_mean_loss`). With ``dev`` (task -> examples) and ``cfg.eval_every``, the
    curve holds each task's compressed and truncated score at ``cfg.dev_ratio`` (as fractions) and
    their target loss (``"<task>, <mode>, loss"``, :func:`dev_loss`)."""
    add_bottleneck_tokens(model, tokenizer, cfg.max_bottleneck)
    examples_at = curriculum(examples, cfg)
    device = next(model.parameters()).device

    def batch_at(step: int) -> dict[str, torch.Tensor]:
        rng = random.Random(cfg.seed * 1_000_003 + step)
        rows, ratios = zip(*[as_training_row(tokenizer, e, *draw_reading(rng, cfg), cfg.max_input)
                             for e in examples_at(step)])
        batch = build_generative_batch(tokenizer, rows, cfg.max_input, cfg.max_target, list(ratios))
        return {k: v.to(device) for k, v in batch.items()}

    def evaluate(step: int) -> dict:
        return {f"{task}, {mode}{what}": value for task, items in dev.items() for mode in ("compressed", "truncated")
                for what, value in (("", evaluate_reading(model, tokenizer, items, mode, cfg.dev_ratio, cfg)["score"]),
                                    (", loss", dev_loss(model, tokenizer, items, mode, cfg)))}

    # A flat rate after warmup: a dev curve that flattens then means the model stopped learning, not
    # that a decaying rate stopped it. An early dev point shows where the curve starts.
    curve = bool(dev and cfg.eval_every)
    return train(model, lambda batch: example_mean_loss(model, batch), batch_at,
                 TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=max(1, cfg.steps // 10), seed=cfg.seed,
                             show_progress=show_progress, schedule="constant", eval_every=cfg.eval_every if curve else 0,
                             eval_at=(max(1, cfg.eval_every // 4),) if curve else ()),
                 evaluate=evaluate if curve else None)


@torch.no_grad()
def dev_loss(model, tokenizer, examples: list[Example], mode: str, cfg: CompressionConfig) -> float:
    """Teacher-forced next-token loss (nats per target token) of ``examples`` read in ``mode`` at
    ``cfg.dev_ratio``: a learning curve that moves while exact match still reads 0 (a model can come
    closer to an answer long before it writes the whole of it)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(examples), cfg.batch_size):
        rows, ratios = zip(*[as_training_row(tokenizer, e, mode, cfg.dev_ratio, cfg.max_input)
                             for e in examples[i:i + cfg.batch_size]])
        batch = build_generative_batch(tokenizer, rows, cfg.max_input, cfg.max_target, list(ratios))
        batch = {k: v.to(device) for k, v in batch.items()}
        total += float(target_token_losses(model, batch).sum())
        count += int((batch["labels"] != -100).sum())
    return total / max(1, count)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .")


def token_accuracy(tokenizer, hypothesis: str, reference: str) -> float:
    """Share of the reference's tokens reproduced at the same position."""
    hyp, ref = token_ids(tokenizer, hypothesis), token_ids(tokenizer, reference)
    return sum(h == r for h, r in zip(hyp, ref)) / max(1, len(ref))


def evaluate_reading(model, tokenizer, examples: list[Example], mode: str, ratio: float, cfg: CompressionConfig,
                     show_progress: bool = False) -> dict[str, float]:
    """Reconstruction (BLEU-4, ROUGE-L, token accuracy) or QA (exact match) scores of one reading mode
    (x100), the task's own metric per example (``per_example``, a fraction; ``score`` its mean), and
    what the model wrote (``hypotheses``; reconstruction also each one's ROUGE-L), so a score of 0
    can be read: a wrong code, another fact's, or no answer at all."""
    if not examples:
        raise ValueError("no examples to evaluate")
    task = examples[0].task
    rows = [as_training_row(tokenizer, e, mode, ratio, cfg.max_input)[0] for e in examples]
    passages = [row[0] for row in rows]
    suffixes = [e.prompt for e in examples]
    hyps = greedy_generate(model, tokenizer, passages, max_new_tokens=cfg.max_target if task == "reconstruct" else 12,
                           max_input=cfg.max_input, ratio=ratio if mode == "compressed" else None,
                           suffixes=suffixes, show_progress=show_progress)
    if task == "qa":
        per = [float(_normalise(h) == _normalise(e.answer)) for h, e in zip(hyps, examples)]
        return {"exact_match": 100 * float(np.mean(per)), "per_example": per, "score": float(np.mean(per)),
                "hypotheses": hyps}
    refs = [tokenizer.decode(token_ids(tokenizer, e.passage)[:cfg.max_target]) for e in examples]
    per = [token_accuracy(tokenizer, h, r) for h, r in zip(hyps, refs)]
    scores = generation_scores(hyps, refs, per_question=True)
    return {"BLEU-4": scores["BLEU-4"], "ROUGE-L": scores["ROUGE-L"],
            "ROUGE-L per example": scores["ROUGE-L per question"], "token_accuracy": 100 * float(np.mean(per)), "per_example": per, "score": float(np.mean(per)),
            "hypotheses": hyps}
