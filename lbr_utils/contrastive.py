"""Contrastive fine-tuning of an LLM embedder: batches, mined hard negatives, one training call.

The recipe of chapter 3, reused by later chapters: (question, answer) pairs from a domain's CL
split, in-batch negatives, optionally BM25-mined hard negatives with a false-negative filter,
InfoNCE at a temperature, optionally Matryoshka, LoRA or full fine-tuning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

from .batching import PairBatcher
from .data import QARecord, RetrievalSet
from .evaluate import ranked_ndcg
from .embedders import LLMEmbedder
from .losses import info_nce, matryoshka
from .models import add_lora
from .pooling import Pooling, bottleneck_ids, build_inputs, get_pooling
from .train import TrainConfig, TrainResult, train


def mine_hard_negatives(records: list[QARecord], k: int = 1, depth: int = 10,
                        filter_false_negatives: bool = True) -> list[list[int]]:
    """For each record, indices of ``k`` other records whose answers BM25 ranks high for its question.

    The false-negative filter drops candidates of the same entity (another phrasing of the right
    answer) and candidates whose answer text equals the positive; without it, "hard negatives" are
    partly positives and the loss pushes right answers away.
    """
    import bm25s

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    answers = [r.answer for r in records]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(answers, stopwords="en", show_progress=False), show_progress=False)
    hits, _ = retriever.retrieve(bm25s.tokenize([r.question for r in records], stopwords="en", show_progress=False),
                                 k=min(depth, len(records)), show_progress=False)
    def allowed(i: int, j: int) -> bool:
        return j != i and (not filter_false_negatives or (records[j].entity != records[i].entity
                                                          and records[j].answer != records[i].answer))

    out = []
    for i, row in enumerate(hits):
        keep = [int(j) for j in row if allowed(i, int(j))][:k]
        # Rarely BM25's top ranks hold fewer than k usable answers: top up with the next records.
        keep += [j for j in range(len(records)) if allowed(i, j) and j not in keep][: k - len(keep)]
        out.append(keep)
    return out


@dataclass
class ContrastiveConfig:
    steps: int = 40
    batch_size: int = 16
    lr: float = 2e-4
    temperature: float = 0.05
    hard_negatives: int = 0
    filter_false_negatives: bool = True
    matryoshka_dims: tuple[int, ...] = ()
    lora_rank: int = 16  # 0: full fine-tuning
    pooling: str | Pooling = "mean"  # a name, or bottleneck_pooling(r) for LBR's stage 2
    causal: bool = True  # False: bidirectional attention (LLM2Vec-style)
    max_length: int = 64
    seed: int = 0
    pack: bool = True  # several texts per row in training (same embeddings, far less padding)
    eval_every: int = 0  # score the dev set every this many steps (a learning curve), when one is given
    # "constant" (after warmup) makes the first n steps of a run an n-step run (see TrainConfig).
    schedule: str = "cosine"
    warmup_steps: int | None = None  # None: a tenth of the steps
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def pack_width(self) -> int | None:
        """Tokens per packed training row: the longest text with a template (echo doubles it), or
        several short ones."""
        return 2 * self.max_length + 16 if self.pack else None


def dev_scores(per_query: dict[str, float]) -> dict:
    """A dev-curve point: mean NDCG@10 and every query's (in the dev set's order), so the gain over a
    stretch of training can be judged query by query."""
    scores = list(per_query.values())
    return {"dev NDCG@10": sum(scores) / len(scores), "dev per query": scores}


def _train_config(cfg: ContrastiveConfig, show_progress: bool, dev: RetrievalSet | None, eval_at: tuple[int, ...] = (),
                  checkpoint_dir: str | None = None) -> TrainConfig:
    """The training-loop settings of a contrastive run (LLM or encoder alike)."""
    return TrainConfig(steps=cfg.steps, lr=cfg.lr, seed=cfg.seed, schedule=cfg.schedule,
                       warmup_steps=cfg.warmup_steps if cfg.warmup_steps is not None else max(1, cfg.steps // 10),
                       checkpoint_dir=checkpoint_dir,
                       checkpoint_every=max(1, cfg.steps // 4) if checkpoint_dir else 0, show_progress=show_progress,
                       eval_every=cfg.eval_every if dev is not None else 0, eval_at=eval_at)


def train_contrastive(model, tokenizer, records: list[QARecord], cfg: ContrastiveConfig,
                      checkpoint_dir: str | None = None, show_progress: bool = True,
                      dev: RetrievalSet | None = None,
                      at_steps: Mapping[int, Callable[[LLMEmbedder], None]] | None = None
                      ) -> tuple[LLMEmbedder, TrainResult]:
    """Fine-tune ``model`` on (question, answer) pairs; return the trained embedder and the loss curve
    (and, with a ``dev`` set and ``cfg.eval_every``, the dev NDCG@10 curve in ``result.curve``).

    ``at_steps`` maps a step to a function called with the embedder as it is after that step (e.g. to
    score the evaluation set at a shorter budget of the same run: with ``schedule="constant"`` the
    model after step n is the model an n-step run ends with)."""
    if cfg.temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {cfg.temperature}")
    if cfg.lora_rank:
        # A readout that training can shape: the bottleneck rows an LBR embedding reads train with LoRA.
        reads = bottleneck_ids(tokenizer) if get_pooling(cfg.pooling).input_format == "bottleneck" else None
        torch.manual_seed(cfg.seed)  # LoRA's random init: from the seed, not from whatever ran before
        model = add_lora(model, r=cfg.lora_rank, alpha=2 * cfg.lora_rank, dropout=0.0, trainable_tokens=reads)
    negatives = (mine_hard_negatives(records, cfg.hard_negatives, filter_false_negatives=cfg.filter_false_negatives)
                 if cfg.hard_negatives else None)
    batcher = PairBatcher(records, cfg.batch_size, cfg.seed, negatives)
    embedder = LLMEmbedder(model, tokenizer, pooling=cfg.pooling, causal=cfg.causal, max_length=cfg.max_length)
    device = next(model.parameters()).device
    loss = matryoshka(info_nce, cfg.matryoshka_dims) if cfg.matryoshka_dims else info_nce

    def encode(texts: list[str]):
        batch = build_inputs(tokenizer, texts, embedder.pooling, cfg.max_length, pack_width=cfg.pack_width,
                             causal=cfg.causal)
        return embedder.forward({k: v.to(device) for k, v in batch.items()})

    def loss_fn(batch: dict):
        q, p = encode(batch["queries"]), encode(batch["positives"])
        n = encode(batch["negatives"]) if "negatives" in batch else None
        groups = batch["groups"] if cfg.filter_false_negatives else None
        neg_groups = batch.get("negative_groups") if groups is not None else None
        return loss(q, p, n, temperature=cfg.temperature, group_ids=groups, negative_group_ids=neg_groups)

    at_steps = dict(at_steps or {})
    if any(not 1 <= step <= cfg.steps for step in at_steps):
        raise ValueError(f"at_steps must lie in 1..{cfg.steps}, got {sorted(at_steps)}")

    def evaluate(step: int) -> dict:
        if step in at_steps:
            at_steps[step](embedder.replace(bf16=True))  # a fresh cache: the weights moved
        if dev is None or not cfg.eval_every or (step % cfg.eval_every and step != cfg.steps):
            return {}
        return dev_scores(ranked_ndcg(embedder.replace(bf16=True).embed, dev))

    result = train(model, loss_fn, batcher, _train_config(cfg, show_progress, dev, tuple(at_steps), checkpoint_dir),
                   evaluate=evaluate if dev is not None or at_steps else None)
    model.eval()
    return embedder.replace(), result  # a fresh cache: nothing embedded mid-training is handed back


def truncated(embedder, dim: int):
    """An embed function returning the first ``dim`` coordinates (Matryoshka evaluation)."""
    def embed(texts: list[str]) -> np.ndarray:
        return embedder.embed(texts)[:, :dim]
    return embed


def train_encoder(records: list[QARecord], cfg: ContrastiveConfig, path: str | None = None,
                  show_progress: bool = True, dev: RetrievalSet | None = None):
    """Fine-tune a sentence-transformers encoder (default: all-MiniLM-L6-v2) on the same pairs with the
    same loop and loss: InfoNCE at ``cfg.temperature`` is ``MultipleNegativesRankingLoss`` with
    ``scale = 1 / temperature`` (tested), with the same-entity false negatives masked as for the LLMs. What a practitioner would train instead of an LLM embedder.
    Full fine-tuning (``cfg.lora_rank`` and ``cfg.pooling`` do not apply: the encoder pools its own way).
    Returns the trained :class:`SentenceTransformerEmbedder` and the training result."""
    from .embedders import SentenceTransformerEmbedder

    if cfg.temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {cfg.temperature}")
    embedder = SentenceTransformerEmbedder(path, max_length=cfg.max_length)
    st = embedder.model
    batcher = PairBatcher(records, cfg.batch_size, cfg.seed)

    def encode(texts: list[str]):
        features = {k: v.to(st.device) if hasattr(v, "to") else v for k, v in st.tokenize(texts).items()}
        return st(features)["sentence_embedding"]

    def loss_fn(batch: dict):
        return info_nce(encode(batch["queries"]), encode(batch["positives"]), temperature=cfg.temperature,
                        group_ids=batch["groups"] if cfg.filter_false_negatives else None)

    def evaluate(step: int) -> dict:
        return dev_scores(ranked_ndcg(embedder.replace().embed, dev))

    result = train(st, loss_fn, batcher, _train_config(cfg, show_progress, dev),
                   evaluate=evaluate if dev is not None else None)
    return embedder.replace(), result
