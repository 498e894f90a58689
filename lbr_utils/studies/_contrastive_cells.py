"""Chapter 3's computation, apart from its presentation: the recipes, and one cached cell per
(recipe, seed). Its own module so that the chapter's claims and prose can change without
invalidating hours of training: a cell's key holds this module's code, not the chapter's.
Chapter 4 trains with the same base recipe, reads the same dev-best checkpoint and scores with the
same row."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..batching import PairBatcher
from ..contrastive import ContrastiveConfig, mine_hard_negatives, train_contrastive, truncated
from ..data import load_domain
from ..embedders import LLMEmbedder, SentenceTransformerEmbedder
from ..evaluate import ranked_ndcg
from ..models import load_causal_lm
from ..profiles import Profile
from ..runcache import cache_key, cached_json, code_fingerprint
from ..train import TrainResult

BASE = "in-batch, t=0.05 (base)"
# A run scored as if it had had the base recipe's compute: after the step at which it has encoded as many
# tokens as the base recipe's whole run (:func:`equal_compute_step`).
EQUAL_COMPUTE = " @ equal compute"
MATRYOSHKA_DIMS = (576, 288, 144, 72, 36)


def recipes(base: ContrastiveConfig) -> dict[str, ContrastiveConfig]:
    """Run name -> config: the base recipe and one change at a time."""
    return {
        BASE: base,
        "+ hard negatives (filtered)": replace(base, hard_negatives=1),
        # One switch drops both false-negative guards: the filter on mined negatives and the in-batch mask.
        "+ hard negatives, no false-negative guard": replace(base, hard_negatives=1, filter_false_negatives=False),
        "t=0.02": replace(base, temperature=0.02),
        "t=0.1": replace(base, temperature=0.1),
        "Matryoshka": replace(base, matryoshka_dims=MATRYOSHKA_DIMS),
        "full fine-tuning": replace(base, lora_rank=0, lr=2e-5),
    }


def base_recipe(profile: Profile, seed: int) -> ContrastiveConfig:
    """LoRA, in-batch negatives, t = 0.05, mean pooling, at the profile's (LBR) scale, with chapter 5's
    stage-2 schedule: the learning rate stays flat after warmup, so a curve that flattens has
    flattened by itself, not because the rate decayed. The dev set is scored four times a run
    (chapter 3's longer runs: eight)."""
    return ContrastiveConfig(steps=profile.train_steps, batch_size=profile.batch_size, max_length=profile.max_length,
                             seed=seed, schedule="constant", warmup_steps=max(1, profile.train_steps // 10),
                             eval_every=max(1, profile.train_steps // 4))


def equal_compute_step(tokenizer, records, cfg: ContrastiveConfig) -> int:
    """The step after which ``cfg``'s run (mined hard negatives) has encoded as many tokens as the same
    recipe without them does in all its steps, replaying both runs' batches (a step's cost: the tokens
    of its queries, positives and negatives, each cut at ``max_length``). A hard negative is another
    answer, and answers are several times longer than questions, so three texts a pair cost more than
    3/2 of two: counting texts would hand the hard-negative run extra compute."""
    texts = list({t for r in records for t in (r.question, r.answer)})
    length = {t: min(len(ids), cfg.max_length) for t, ids in zip(texts, tokenizer(texts, add_special_tokens=False)["input_ids"])}

    def cost(batch: dict) -> int:
        return sum(length[t] for key in ("queries", "positives", "negatives") for t in batch.get(key, ()))

    budget = sum(cost(PairBatcher(records, cfg.batch_size, cfg.seed)(step)) for step in range(cfg.steps))
    hard = PairBatcher(records, cfg.batch_size, cfg.seed, mine_hard_negatives(
        records, cfg.hard_negatives, filter_false_negatives=cfg.filter_false_negatives))
    spent = 0
    for step in range(cfg.steps):
        spent += cost(hard(step))
        if spent >= budget:
            return step + 1
    return cfg.steps


@contextmanager
def dev_selection(model, tokenizer, records, cfg: ContrastiveConfig, dev, show_progress: bool = False
                  ) -> Iterator[tuple[TrainResult, Callable[[int | None], tuple[LLMEmbedder, int]]]]:
    """Train ``cfg`` with its dev curve, keeping the trained weights at every dev point; yields the
    training result and ``select(within)``, which loads the dev point with the best NDCG@10 at or
    before step ``within`` (the whole run: None; the earliest of ties) and returns (embedder, step).

    Why: a run's dev curve peaks and then falls as it over-fits a small CL split, at a step that
    depends on the recipe. Scoring every run after its last step would compare recipes at different
    stages of over-fitting (and a budget-cut snapshot near its peak with a full run past its own);
    each is read instead where a practitioner would stop it, chosen on dev, never on the evaluation set."""
    points = sorted({*range(cfg.eval_every, cfg.steps + 1, cfg.eval_every), cfg.steps})
    with tempfile.TemporaryDirectory(prefix="dev-selection-") as folder:
        def keep(step: int) -> Callable[[LLMEmbedder], None]:
            def save(trained: LLMEmbedder) -> None:
                torch.save({n: p.detach().clone() for n, p in trained.model.named_parameters() if p.requires_grad},
                           Path(folder) / f"{step}.pt")
            return save

        embedder, result = train_contrastive(model, tokenizer, records, cfg, show_progress=show_progress, dev=dev,
                                             at_steps={step: keep(step) for step in points})

        def select(within: int | None = None) -> tuple[LLMEmbedder, int]:
            curve = [p for p in result.curve if within is None or p["step"] <= within]
            if not curve:
                raise ValueError(f"no dev point at or before step {within} (dev every {cfg.eval_every} steps)")
            best = max(curve, key=lambda p: p["dev NDCG@10"])["step"]
            unexpected = embedder.model.load_state_dict(torch.load(Path(folder) / f"{best}.pt"), strict=False).unexpected_keys
            if unexpected:
                raise RuntimeError(f"a snapshot names parameters the model lacks: {unexpected[:3]}")
            return embedder.replace(), best  # a fresh cache: the weights moved

        yield result, select


def pair_cosines(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """Cosines of disjoint random pairs of rows (a shuffle, read two at a time): their mean estimates
    :func:`lbr_utils.geometry.anisotropy`, and since no row is in two pairs, each pair is its own
    draw, so a CI over pairs is not narrowed by reusing documents. The same ``seed`` gives every
    model the same pairs (a paired comparison)."""
    order = np.random.default_rng(seed).permutation(len(vectors))
    i, j = order[0:len(order) - 1:2], order[1::2]
    u = np.asarray(vectors, dtype=np.float64)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    return np.sum(u[i] * u[j], axis=1)


def retrieval_row(name: str, embed, eval_set) -> dict:
    """One model's NDCG@10 on an evaluation set: the mean, and every query's score in the set's order
    (what a paired claim needs)."""
    per_query = ranked_ndcg(embed, eval_set)
    scores = [per_query[q] for q in eval_set.qrels]
    return {"model": name, "metric": "NDCG@10", "score": float(np.mean(scores)), "per_query": scores}


def _scored(name: str, embed, splits, seed: int) -> dict[str, list]:
    corpus = list(splits.eval.corpus.values())
    return {"retrieval": [retrieval_row(name, embed, splits.eval)],
            "geometry": [{"model": name, "pair_cosines": pair_cosines(embed(corpus), seed=seed).tolist()}]}


def _cell(profile: Profile, domain: str, seed: int, name: str, cfg: ContrastiveConfig | None) -> dict[str, list]:
    """One model of the chapter: the base LLM (``cfg`` None), a trained recipe, or MiniLM."""
    splits = load_domain(domain, profile, seed)
    if name == "all-MiniLM-L6-v2":
        return _scored(name, SentenceTransformerEmbedder(max_length=profile.max_length).embed, splits, seed)
    model, tok = load_causal_lm(profile.model)
    if cfg is None:
        return _scored(name, LLMEmbedder(model, tok, pooling="mean", max_length=profile.max_length, bf16=True).embed,
                       splits, seed)
    # The guarded hard-negative run is also read at the base recipe's compute: its best dev point up to
    # the step at which it has encoded as many tokens as the base recipe's whole run.
    budget = equal_compute_step(tok, splits.cl, cfg) if cfg.hard_negatives and cfg.filter_false_negatives else None
    matched = []
    with dev_selection(model, tok, splits.cl, cfg, splits.dev) as (result, select):
        if budget:
            trained, step = select(budget)
            matched.append(retrieval_row(f"{name}{EQUAL_COMPUTE}", trained.replace(bf16=True, max_length=profile.max_length)
                                         .embed, splits.eval) | {"steps": step, "budget steps": budget})
        embedder, step = select(None)
    embedder = embedder.replace(bf16=True, max_length=profile.max_length)
    out = _scored(name, embedder.embed, splits, seed) | {"training": [{"model": name, **result.summary(), "selected step": step}]}
    out["retrieval"][0]["steps"] = step
    out["retrieval"] += matched
    if cfg.matryoshka_dims or name == BASE:
        out["matryoshka"] = []
        for d in MATRYOSHKA_DIMS:
            per_query = ranked_ndcg(truncated(embedder, d), splits.eval)
            out["matryoshka"].append({"model": name, "dim": d, "per_query": [per_query[q] for q in splits.eval.qrels]})
    return out


def cell(profile: Profile, domain: str, seed: int, name: str, cfg: ContrastiveConfig | None) -> dict[str, list]:
    key = cache_key(code_fingerprint(__name__), profile=profile.to_dict(), domain=domain, seed=seed, name=name,
                    cfg=cfg.to_dict() if cfg else None)
    return cached_json("ch03_cells", key, lambda: _cell(profile, domain, seed, name, cfg))
