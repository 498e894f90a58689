"""Contrastive fine-tuning of an LLM embedder: batches, mined hard negatives, one training call.

The recipe of chapter 3, reused by later chapters: (question, answer) pairs from a domain's CL
split, in-batch negatives, optionally BM25-mined hard negatives with a false-negative filter,
InfoNCE at a temperature, optionally Matryoshka, LoRA or full fine-tuning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .batching import PairBatcher
from .data import QARecord
from .embedders import LLMEmbedder
from .losses import info_nce, matryoshka
from .models import add_lora
from .pooling import Pooling, build_inputs
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
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def pack_width(self) -> int | None:
        """Tokens per packed training row: the longest text with a template (echo doubles it), or
        several short ones."""
        return 2 * self.max_length + 16 if self.pack else None


def train_contrastive(model, tokenizer, records: list[QARecord], cfg: ContrastiveConfig,
                      checkpoint_dir: str | None = None, show_progress: bool = True) -> tuple[LLMEmbedder, TrainResult]:
    """Fine-tune ``model`` on (question, answer) pairs; return the trained embedder and the loss curve."""
    if cfg.temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {cfg.temperature}")
    if cfg.lora_rank:
        model = add_lora(model, r=cfg.lora_rank, alpha=2 * cfg.lora_rank, dropout=0.0)
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

    result = train(model, loss_fn, batcher, TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=max(1, cfg.steps // 10),
                                                        seed=cfg.seed, checkpoint_dir=checkpoint_dir,
                                                        checkpoint_every=max(1, cfg.steps // 4) if checkpoint_dir else 0,
                                                        show_progress=show_progress))
    model.eval()
    return embedder.replace(), result  # a fresh cache: nothing embedded mid-training is handed back


def truncated(embedder, dim: int):
    """An embed function returning the first ``dim`` coordinates (Matryoshka evaluation)."""
    def embed(texts: list[str]) -> np.ndarray:
        return embedder.embed(texts)[:, :dim]
    return embed
