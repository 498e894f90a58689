"""Throughput benchmarks (not timed tests): run alone on an idle machine, in one process.

    python benchmarks/bench_throughput.py --profile cpu

1. Training, three stages on real batches: stage 1 of LBR (IB-GL, SFT style, full fine-tuning),
   stage 2 (LoRA contrastive learning read from the last bottleneck token) and chapter 3's full
   fine-tuning (contrastive, mean pooling). Each stage runs three arms on the *same* batches,
   interleaved step by step so drift in machine speed hits every arm alike:

   * ``ours``: the training loop as it is (:func:`lbr_utils.train.train`'s step: packed batches in
     every stage, fused AdamW, eager attention on the CPU, frozen weights held in bf16, bf16 autocast);
   * ``before``: the loop before the throughput work (padded batches, unfused AdamW, SDPA
     attention, fp32 frozen weights, bf16 autocast);
   * ``naive fp32``: a plain PyTorch loop (padded batches, fp32, no autocast, unfused AdamW).

   Before anything is timed, every arm's loss on the first batch is computed from the same weights
   and must agree with the fp32 reference (within bf16 rounding): the arms do the same work.
   Throughput counts *useful* tokens (not padding), and useful FLOPs (6 x decoder parameters per
   token for full fine-tuning, 4 x for LoRA, where no weight gradient is computed; plus the LM head
   on the scored positions of stage 1) as a share of the bf16 matmul peak measured in this run.
2. Embedding: texts/s of ``LLMEmbedder`` vs. sentence-transformers on the same SmolLM2 weights, both
   reading the plain text (no chat template) with mean pooling, in fp32 and bf16; the vectors of the
   two arms must agree (cosine > 0.999) before they are timed.
Results go to ``results/<profile>/benchmarks.json`` with provenance.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import ExitStack, nullcontext

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lbr_utils.batching import PairBatcher  # noqa: E402
from lbr_utils.contrastive import ContrastiveConfig  # noqa: E402
from lbr_utils.data import load_domain  # noqa: E402
from lbr_utils.embedders import LLMEmbedder  # noqa: E402
from lbr_utils.lbr import build_generative_batch, configs, generative_loss  # noqa: E402
from lbr_utils.losses import info_nce  # noqa: E402
from lbr_utils.models import (add_bottleneck_tokens, add_lora, attention_implementation, decoder,  # noqa: E402
                              frozen_linear_weights_in_bf16, load_causal_lm, smollm2_path)
from lbr_utils.pooling import build_inputs, get_pooling  # noqa: E402
from lbr_utils.profiles import get_profile, lbr_profile  # noqa: E402
from lbr_utils.results import save_results  # noqa: E402

ARMS = {  # name: (packed batches, fused AdamW, eager attention, bf16 frozen weights, bf16 autocast)
    "ours": (True, True, True, True, True),
    "before": (False, False, False, False, True),
    "naive fp32": (False, False, False, False, False),
}


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a square matmul in ``dtype`` (best of ``repeats``)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    return max(2 * n ** 3 / _timed(lambda: a @ b) for _ in range(repeats))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Arm:
    """One way of training: a model, its optimizer, and the settings of ``ARMS[name]``."""

    def __init__(self, name: str, model, loss_fn, batches: list, lora: bool) -> None:
        self.packed, fused, eager, bf16_frozen, self.autocast = ARMS[name]
        self.model, self.loss_fn, self.batches, self.times = model.train(), loss_fn, batches, []
        params = [p for p in model.parameters() if p.requires_grad]
        self.params, self.optimizer = params, torch.optim.AdamW(params, lr=1e-5, fused=fused)
        self.stack = ExitStack()  # the arm's settings hold for its whole life, as in train()
        if eager:
            self.stack.enter_context(attention_implementation(model, "eager"))
        if bf16_frozen and lora:
            self.stack.enter_context(frozen_linear_weights_in_bf16(model))

    def loss(self, batch):
        with torch.autocast("cpu", dtype=torch.bfloat16) if self.autocast else nullcontext():
            return self.loss_fn(self.model, batch)

    def step(self, batch) -> float:
        start = time.perf_counter()
        loss = self.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)  # as train() does
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start


def run_stage(make_model, make_batches, loss_fn, useful_tokens, flops_per_step, steps: int, warmup: int,
              lora: bool) -> dict:
    """Time every arm on the same batches; assert first that they compute the same loss."""
    arms = {}
    for name in ARMS:
        model = make_model()
        arms[name] = Arm(name, model, loss_fn, make_batches(packed=ARMS[name][0]), lora)
    with torch.no_grad():
        losses = {name: float(arm.loss(arm.batches[0])) for name, arm in arms.items()}
    reference = losses["naive fp32"]
    assert all(abs(v - reference) <= 0.02 * abs(reference) + 0.02 for v in losses.values()), losses
    for s in range(warmup + steps):
        for arm in arms.values():
            seconds = arm.step(arm.batches[s])
            if s >= warmup:
                arm.times.append(seconds)
    tokens = sum(useful_tokens(s) for s in range(warmup, warmup + steps)) / steps
    flops = sum(flops_per_step(s) for s in range(warmup, warmup + steps)) / steps
    out = {"first_batch_loss": losses, "useful_tokens_per_step": tokens}
    for name, arm in arms.items():
        median = statistics.median(arm.times)
        out[name] = {"median_step_s": median, "useful_tokens_per_s": tokens / median, "useful_flops": flops / median}
        arm.stack.close()
    for name in ("before", "naive fp32"):
        out[f"ours vs {name}"] = out["ours"]["useful_tokens_per_s"] / out[name]["useful_tokens_per_s"]
    return out


def bench_training(profile_name: str, steps: int, warmup: int) -> dict:
    lbr = lbr_profile(get_profile(profile_name))
    splits = load_domain("medical", lbr)
    stage1, stage2 = configs(lbr, 0)
    model, tok = load_causal_lm(lbr.model)
    add_bottleneck_tokens(model, tok, stage1.max_bottleneck)
    blocks = sum(p.numel() for p in decoder(model).layers.parameters())
    hidden, vocab = model.config.hidden_size, model.get_output_embeddings().weight.shape[0]
    del model

    def fresh(lora: bool = False):
        model, tok_ = load_causal_lm(lbr.model)
        add_bottleneck_tokens(model, tok_, stage1.max_bottleneck)
        return add_lora(model, r=stage2.lora_rank, alpha=2 * stage2.lora_rank, dropout=0.0) if lora else model

    out = {}
    # Stage 1: IB-GL, SFT style, full fine-tuning.
    pairs, batcher = stage1.pairs(splits.gl), PairBatcher(splits.gl, stage1.batch_size)
    chosen = [[pairs[i] for i in batcher.indices(s)] for s in range(warmup + steps)]

    def stage1_batches(packed: bool) -> list:
        return [build_generative_batch(tok, rows, stage1.max_input, stage1.max_target, stage1.ratio,
                                       pack_width=stage1.pack_width if packed else None) for rows in chosen]

    padded = stage1_batches(False)
    real = [int((b["segments"] != 0).sum()) for b in padded]
    scored = [int((b["labels"] != -100).sum()) for b in padded]
    out["stage 1 (IB-GL, SFT, full fine-tuning)"] = run_stage(
        fresh, stage1_batches, lambda m, b: generative_loss(m, b), lambda s: real[s],
        lambda s: 6 * blocks * real[s] + 6 * hidden * vocab * scored[s], steps, warmup, lora=False)

    # Stage 2 and chapter 3: contrastive, on the same pairs.
    pair_batches = [PairBatcher(splits.cl, stage2.batch_size)(s) for s in range(warmup + steps)]

    def contrastive(pooling, max_length: int, lora: bool, label: str, batch_size: int) -> None:
        pool = get_pooling(pooling)
        groups = [PairBatcher(splits.cl, batch_size)(s) for s in range(warmup + steps)] if batch_size != stage2.batch_size \
            else pair_batches
        def encode(packed: bool) -> list[dict]:
            width = ContrastiveConfig(max_length=max_length).pack_width if packed else None  # as in training
            return [{k: build_inputs(tok, b[k], pool, max_length, pack_width=width) for k in ("queries", "positives")}
                    for b in groups]

        encoded = encode(False)

        embedders: dict[int, LLMEmbedder] = {}

        def loss_fn(model, batch):
            if id(model) not in embedders:  # one per arm: building one puts the model in eval mode
                embedders[id(model)] = LLMEmbedder(model, tok, pooling=pool, max_length=max_length)
                model.train()
            emb = embedders[id(model)]
            return info_nce(emb.forward(batch["queries"]), emb.forward(batch["positives"]), temperature=0.05)

        real_ = [sum(int(e["attention_mask"].sum()) for e in b.values()) for b in encoded]
        out[label] = run_stage(lambda: fresh(lora), encode, loss_fn, lambda s: real_[s],
                               lambda s: (4 if lora else 6) * blocks * real_[s], steps, warmup, lora=lora)

    contrastive(stage2.pooling, stage2.max_length, True, "stage 2 (LoRA contrastive, bottleneck pooling)",
                stage2.batch_size)
    full = get_profile(profile_name)
    contrastive("mean", min(64, full.max_length), False, "chapter 3 (contrastive, full fine-tuning)", full.batch_size)
    return out


def bench_embedding(texts: list[str], max_length: int, batch_size: int) -> dict:
    """Ours vs. sentence-transformers, both on the plain text, mean pooling, identical vectors."""
    from sentence_transformers import SentenceTransformer, models

    model, tok = load_causal_lm("smollm2-135m")
    plain = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
    st = SentenceTransformer(modules=[models.Transformer(str(smollm2_path()), max_seq_length=max_length,
                                                         modality_config=plain, module_output_name="token_embeddings"),
                                      models.Pooling(model.config.hidden_size, pooling_mode="mean")], device="cpu")
    st.tokenizer.pad_token = st.tokenizer.pad_token or tok.pad_token
    out = {}
    for precision in ("fp32", "bf16"):
        ours = LLMEmbedder(model, tok, "mean", batch_size=batch_size, max_length=max_length, bf16=precision == "bf16")
        st_model = st.to(torch.bfloat16) if precision == "bf16" else st.to(torch.float32)
        a = ours.replace().embed(texts[:batch_size])
        b = st_model.encode(texts[:batch_size], batch_size=batch_size, convert_to_numpy=True).astype(np.float32)
        cosine = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() > (0.999 if precision == "fp32" else 0.99), f"{precision}: arms disagree, {cosine.min()}"
        times = {"ours": [], "st": []}
        for _ in range(3):  # interleaved repeats; a fresh copy of ours has an empty cache
            times["ours"].append(_timed(lambda: ours.replace().embed(texts)))
            times["st"].append(_timed(lambda: st_model.encode(texts, batch_size=batch_size, show_progress_bar=False)))
        t_ours, t_st = min(times["ours"]), min(times["st"])
        out[precision] = {"ours_texts_per_s": len(texts) / t_ours, "st_texts_per_s": len(texts) / t_st,
                          "speedup_vs_st": t_st / t_ours, "min_cosine": float(cosine.min())}
    st.to(torch.float32)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    profile = get_profile(args.profile)
    texts = [r.answer for r in load_domain("medical", profile).gl][: args.texts]
    start = time.perf_counter()
    peaks = [matmul_peak(torch.bfloat16)]
    training = bench_training(args.profile, args.steps, args.warmup)
    embedding = bench_embedding(texts, profile.max_length, profile.embed_batch_size)
    peaks.append(matmul_peak(torch.bfloat16))  # again at the end: the better of the two
    peak = {"bf16": max(peaks), "fp32": matmul_peak(torch.float32)}
    for stage in training.values():
        for arm in ARMS:
            stage[arm]["share_of_bf16_peak"] = stage[arm]["useful_flops"] / peak["bf16"]
    metrics = {"matmul_peak_flops": peak, "training": training, "embedding": embedding}
    save_results("benchmarks", args.profile, metrics, {"texts": len(texts), "steps": args.steps, "warmup": args.warmup,
                                                       "threads": torch.get_num_threads(), "arms": ARMS},
                 seeds=[0], wall_time_s=time.perf_counter() - start)
    for stage, r in training.items():
        print(stage, {k: round(v["useful_tokens_per_s"], 1) for k, v in r.items() if k in ARMS},
              {k: round(v, 2) for k, v in r.items() if k.startswith("ours vs")})
    print(embedding)


if __name__ == "__main__":
    main()
