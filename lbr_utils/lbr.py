"""Learn Before Represent (Liang et al.): stage 1, information-bottleneck-constrained generative
learning (IB-GL), and the plumbing that lets stage 2 start from its checkpoint.

Stage 1 reads ``[x, B, y]`` under the mask of :mod:`lbr_utils.masks` and learns to predict ``y``
from the bottleneck ``B`` alone, so the domain knowledge it learns is written *into the states that
stage 2 reads as the embedding*. Two data styles, as in the paper:

* ``sft``: x = question, y = answer (a labelled QA pair);
* ``pt``: x = y = an unlabelled domain text, reconstructed through the bottleneck.

With ``bottleneck=False`` the same code is the standard generative baseline (GL): ``[x, y]``, plain
causal attention, the loss on ``y`` (``pt``: the loss on the whole text, ordinary pre-training).

Stage 2 (GR-CL) is the contrastive recipe of chapter 3 with :func:`lbr_utils.pooling.bottleneck_pooling`;
:func:`stage1_model` trains a stage-1 model once per config and caches it, so every experiment
that needs "IB-GL on medical, seed 1" shares one checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .batching import PairBatcher, pack_rows
from .contrastive import ContrastiveConfig, train_contrastive
from .data import DomainSplits, QARecord, load_domain
from .embedders import LLMEmbedder
from .masks import BOTTLENECK, INPUT, PAD, TARGET, ib_attention_mask
from .models import add_bottleneck_tokens, decoder, load_causal_lm
from .pooling import bos_ids, bottleneck_ids, bottleneck_pooling, token_ids, with_bottleneck
from .profiles import Profile
from .runcache import cache_key, code_fingerprint, run_cache_dir
from .train import TrainConfig, TrainResult, train

STYLES = ("sft", "pt")
RATIO = 8.0  # the paper's default compression ratio


@dataclass(frozen=True)
class GenerativeConfig:
    """One stage-1 run. ``bottleneck=False`` is standard GL; ``ratio`` is r = len(x) / k."""

    style: str = "sft"
    bottleneck: bool = True
    ratio: float = 8.0
    steps: int = 40
    batch_size: int = 16
    lr: float = 5e-5
    max_input: int = 64
    max_target: int = 32
    seed: int = 0
    pack: bool = True  # several examples per row (same loss, far less padding)
    # Every input gets the same max_bottleneck tokens (the paper's fixed-length bottleneck), so the
    # <bn_k> that stage 2 and evaluation read is the one every stage-1 row trained. False: ceil(len / r).
    fixed_bottleneck: bool = True

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; choose one of {', '.join(STYLES)}")
        if self.ratio <= 0:
            raise ValueError(f"compression ratio must be > 0, got {self.ratio}")

    @property
    def max_bottleneck(self) -> int:
        """Bottleneck tokens to add to the vocabulary: enough for the longest input (with a BOS)."""
        return math.ceil((self.max_input + 1) / self.ratio)

    @property
    def pack_width(self) -> int | None:
        """Tokens per packed row: the longest row this config can make (BOS, x, B, y, EOS), so any
        two short examples share a row and the longest still fits alone."""
        return self.max_input + self.max_bottleneck + self.max_target + 2 if self.pack else None

    def pairs(self, records: list[QARecord]) -> list[tuple[str, str]]:
        """(x, y) texts of this style. PT without the bottleneck is ordinary language modelling of the
        text (no x): the standard that PT-style IB-GL, which must rebuild the text from B, is timed against."""
        if self.style == "sft":
            return [(r.question, r.answer) for r in records]
        return [(r.answer if self.bottleneck else "", r.answer) for r in records]


def build_generative_batch(tokenizer, examples: Sequence[tuple[str, ...]], max_input: int, max_target: int,
                           ratio: float | Sequence[float | None] | None = None, bottleneck_sees_input: bool = True,
                           padding_side: str | None = None, dtype: torch.dtype = torch.float32,
                           max_prompt: int = 32, pack_width: int | None = None,
                           bottleneck_length: int | None = None) -> dict[str, torch.Tensor]:
    """Token ids, labels, positions and attention mask for a batch of ``(x, y)`` or ``(x, prompt, y)``.

    With a ratio, a row is ``[x, B, prompt, y]`` under the information-bottleneck mask (prompt and y
    see only B and each other); without one it is ``[x, prompt, y]`` read causally. ``ratio`` may be
    one value or one per row (``None`` rows are plain), so one batch can mix compressed and plain
    reading. A batch with no bottleneck row gets a 2D padding mask (attention keeps its fast path);
    otherwise a float 4D mask. Labels are -100 everywhere but on ``y`` and its EOS; with an empty
    ``x`` and no bottleneck that is plain language modelling of ``y``.

    ``bottleneck_length`` gives every compressed row that many bottleneck tokens (LBR's fixed
    bottleneck); by default a row gets ``ceil(len(x) / r)`` (the context compressor's reading).

    ``pack_width`` packs several examples into one row of at most that many tokens (for training:
    the loss is the same, the padding mostly gone). Each example keeps its own positions (from 0)
    and attends only within itself: the mask is block-diagonal over examples, so a packed row is
    exactly its examples read one by one. No label crosses an example boundary: the first token of
    every example is never a label (nothing of the example precedes it), packed or not.
    """
    ratios = list(ratio) if isinstance(ratio, (list, tuple)) else [ratio] * len(examples)
    if len(ratios) != len(examples):
        raise ValueError("need one ratio per example")
    bos = bos_ids(tokenizer)
    available = bottleneck_ids(tokenizer) if any(r is not None for r in ratios) else []
    rows = []
    for example, r in zip(examples, ratios):
        x, prompt, y = example if len(example) == 3 else (example[0], "", example[1])
        head = bos + token_ids(tokenizer, x)[:max_input]
        middle = token_ids(tokenizer, prompt)[:max_prompt] if prompt else []
        target = token_ids(tokenizer, y)[:max_target] + [tokenizer.eos_token_id]
        ids = head if r is None else with_bottleneck(tokenizer, head, r, available, bottleneck_length)
        after = TARGET if r is not None else INPUT  # plain rows: one causal block
        segments = [INPUT] * len(head) + [BOTTLENECK] * (len(ids) - len(head)) + [after] * (len(middle) + len(target))
        loss = [False] * (len(ids) + len(middle)) + [True] * len(target)
        loss[0] = False  # nothing precedes it (with no BOS and no x, it is a target token): never scored
        rows.append((ids + middle + target, segments, loss))
    groups = pack_rows([len(ids) for ids, _, _ in rows], pack_width) if pack_width else [[i] for i in range(len(rows))]
    packed = [tuple(sum((rows[i][f] for i in g), []) for f in range(3))
              + ([j for j, i in enumerate(g) for _ in rows[i][0]], [p for i in g for p in range(len(rows[i][0]))])
              for g in groups]
    width = max(len(ids) for ids, *_ in packed)
    left = (padding_side or tokenizer.padding_side) == "left"
    if left and pack_width:
        raise ValueError("packing lays examples out left to right: use right padding")

    def pad(values: list, fill) -> list:
        n = width - len(values)
        return [fill] * n + values if left else values + [fill] * n

    input_ids = torch.tensor([pad(ids, tokenizer.pad_token_id) for ids, *_ in packed])
    segments = torch.tensor([pad(seg, PAD) for _, seg, *_ in packed])
    loss = torch.tensor([pad(flags, False) for _, _, flags, *_ in packed])
    documents = torch.tensor([pad(doc, -1) for *_, doc, _ in packed])
    batch = {"input_ids": input_ids, "segments": segments, "labels": input_ids.masked_fill(~loss, -100),
             "position_ids": torch.tensor([pad(pos, 0) for *_, pos in packed])}
    if any(r is not None for r in ratios) or pack_width:
        batch["attention_mask"] = ib_attention_mask(segments, dtype, bottleneck_sees_input, documents)
    else:
        batch["attention_mask"] = (segments != PAD).long()
    return batch


def next_token_losses(model, labels: torch.Tensor, **inputs) -> torch.Tensor:
    """Cross-entropy of ``labels[:, t]`` under the logits at position ``t - 1``, (batch, seq), zero
    where ``labels`` is -100; ``inputs`` go to the decoder (ids or embeddings, mask, positions).

    Only positions that predict a label go through the LM head. With a 49k-token vocabulary the
    (batch, seq, vocab) logits are a step's largest tensors, and in IB-GL or compression batches most
    positions (input, bottleneck, padding) predict nothing: skipping them saves most of the head's
    time and memory, and the losses are the same as from scoring every position."""
    hidden = decoder(model)(**inputs).last_hidden_state
    follows = labels[:, 1:] != -100
    logits = model.get_output_embeddings()(hidden[:, :-1][follows]).float()
    if cap := getattr(model.config, "final_logit_softcapping", None):  # Gemma 2 caps logits in its LM forward
        logits = cap * torch.tanh(logits / cap)
    losses = F.cross_entropy(logits, labels[:, 1:][follows], reduction="none")
    return F.pad(torch.zeros(follows.shape, dtype=losses.dtype, device=losses.device).masked_scatter(follows, losses),
                 (1, 0))


def target_token_losses(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token loss of every target token, (batch, seq) with zeros elsewhere.

    The token at position t is predicted from position t - 1: the first target token from the last
    bottleneck token (which has seen x), every later one from a target token (which has not)."""
    return next_token_losses(model, batch["labels"], input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"], position_ids=batch["position_ids"])


def generative_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token loss over the batch's target tokens."""
    return target_token_losses(model, batch).sum() / (batch["labels"] != -100).sum().clamp(min=1)


def train_generative(model, tokenizer, records: list[QARecord], cfg: GenerativeConfig,
                     show_progress: bool = True) -> TrainResult:
    """Stage 1 (IB-GL) or standard GL on ``records``: full fine-tuning, in place."""
    if not records:
        raise ValueError("generative learning needs at least one record")
    if cfg.bottleneck:
        # The new tokens' embeddings must learn, so this is full fine-tuning rather than LoRA.
        add_bottleneck_tokens(model, tokenizer, cfg.max_bottleneck)
    batcher, pairs = PairBatcher(records, cfg.batch_size, cfg.seed), cfg.pairs(records)
    device = next(model.parameters()).device

    def batch_at(step: int) -> dict[str, torch.Tensor]:
        chosen = [pairs[i] for i in batcher.indices(step)]
        batch = build_generative_batch(tokenizer, chosen, cfg.max_input, cfg.max_target,
                                       cfg.ratio if cfg.bottleneck else None, pack_width=cfg.pack_width,
                                       bottleneck_length=cfg.max_bottleneck if cfg.fixed_bottleneck else None)
        return {k: v.to(device) for k, v in batch.items()}

    return train(model, lambda batch: generative_loss(model, batch), batch_at,
                 TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=max(1, cfg.steps // 10), seed=cfg.seed,
                             show_progress=show_progress))


def stage1_model(model_name: str, domain: str, records: list[QARecord], cfg: GenerativeConfig,
                 show_progress: bool = False):
    """The stage-1 model for (model, domain, data, config), trained once and then loaded from the
    cache (``<run cache>/stage1/<hash>``, about 270 MB each for SmolLM2). Returns (model, tokenizer, info) where ``info`` holds the
    training losses and wall time of the run that made the checkpoint."""
    key = cache_key(code_fingerprint(__name__), model=model_name, domain=domain, records=[r.id for r in records],
                    cfg=asdict(cfg))
    path = run_cache_dir() / "stage1" / key
    if not (path / "stage1.json").exists():
        model, tok = load_causal_lm(model_name)
        result = train_generative(model, tok, records, cfg, show_progress=show_progress)
        tmp = path.with_name(path.name + ".tmp")
        # Stored in bf16 (half the disk of fp32: the cpu study keeps ~50 checkpoints); every consumer,
        # the first included, loads this copy back, so all see the same weights. Under bf16 autocast
        # the matmuls round weights to bf16 anyway.
        model.to(torch.bfloat16).save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "stage1.json").write_text(json.dumps({"config": asdict(cfg), "domain": domain,
                                                     "model": model_name, **result.to_dict()}))
        tmp.rename(path)
    model, tok = load_causal_lm(str(path))
    return model, tok, json.loads((path / "stage1.json").read_text())


# The recipe: one place decides how the book trains LBR, for the chapters and ``train_lbr`` alike.

def max_length(profile: Profile) -> int:
    """Tokens of a text LBR reads, in stage 1, stage 2 and evaluation alike: then every bottleneck
    token an evaluated text needs exists, and stage 2 has trained with it."""
    return min(64, profile.max_length)


def configs(profile: Profile, seed: int, ratio: float = RATIO) -> tuple[GenerativeConfig, ContrastiveConfig]:
    """Stage-1 (IB-GL; ``bottleneck=False`` for GL) and stage-2 configs of one profile and seed.

    Stage 2 keeps its learning rate flat after warmup and scores the dev set four times a run, so
    one longer contrastive run, scored at the shorter budget too, serves two compute budgets."""
    stage1 = GenerativeConfig(style="sft", bottleneck=True, ratio=ratio, steps=profile.generative_steps,
                              batch_size=profile.batch_size, max_input=max_length(profile),
                              max_target=min(32, profile.max_length), seed=seed)
    stage2 = ContrastiveConfig(steps=profile.train_steps, batch_size=profile.batch_size,
                               max_length=max_length(profile), pooling=bottleneck_pooling(ratio, max_length(profile)),
                               seed=seed, schedule="constant", warmup_steps=max(1, profile.train_steps // 10),
                               eval_every=max(1, profile.train_steps // 4))
    return stage1, stage2


def trained_embedder(profile: Profile, domain: str, seed: int, stage1: GenerativeConfig | None,
                     stage2: ContrastiveConfig | None, show_progress: bool = False,
                     splits: DomainSplits | None = None,
                     at_steps: Mapping[int, Callable[[LLMEmbedder], None]] | None = None
                     ) -> tuple[LLMEmbedder, list[dict]]:
    """The base LLM, after stage 1 and/or stage 2 as given, as an embedder (the bottleneck embedding
    unless ``stage2`` names another pooling); plus a row per training stage: time, steps, final
    loss, the loss curve and (stage 2) the dev NDCG@10 curve. ``splits`` saves reloading the domain
    when the caller has it already; ``at_steps`` goes to :func:`train_contrastive`."""
    splits = splits or load_domain(domain, profile, seed)
    ratio = stage1.ratio if stage1 is not None and stage1.bottleneck else RATIO
    training = []
    if stage1 is None:
        model, tok = load_causal_lm(profile.model)
    else:
        model, tok, info = stage1_model(profile.model, domain, splits.gl, stage1, show_progress=show_progress)
        run = TrainResult(**{k: info[k] for k in TrainResult.__dataclass_fields__ if k in info})
        training.append({"stage": 1, **run.summary()})
    add_bottleneck_tokens(model, tok, configs(profile, seed, ratio)[0].max_bottleneck)  # a no-op after IB-GL
    if stage2 is not None:
        embedder, result = train_contrastive(model, tok, splits.cl, stage2, show_progress=show_progress,
                                             dev=splits.dev, at_steps=at_steps)
        training.append({"stage": 2, **result.summary()})
    else:
        embedder = LLMEmbedder(model, tok, pooling=bottleneck_pooling(ratio, max_length(profile)))
    return embedder.replace(bf16=True, max_length=max_length(profile)), training
