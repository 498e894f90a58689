"""Where a training step's time goes: torch.profiler over real stage-1 and stage-2 steps of SmolLM2.

    python benchmarks/profile_step.py --profile cpu

One stage-1 step (IB-GL, SFT style, full fine-tuning) and one stage-2 step (LoRA contrastive learning
on the last bottleneck token) at the LBR chapters' batch and lengths, each a forward, backward and
AdamW update under bf16 autocast, profiled twice: on the path the training loop took *before* the
throughput work (padded batches, SDPA attention, unfused AdamW, fp32 frozen weights) and on the path
it takes *now* (packed batches in both stages, eager attention, fused AdamW, bf16 frozen weights). The self CPU time
of every op goes to one bucket: the optimizer (every op under its step), matmuls (split into the LM
head and the rest by the vocabulary dimension), attention, norms and element-wise ops, autocast
casts and copies, the embedding and loss, the rest. The share of padding tokens is reported beside it.
Writes ``results/<profile>/profile_step.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from contextlib import ExitStack

import torch
from torch.profiler import ProfilerActivity, profile, record_function

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lbr_utils.batching import PairBatcher  # noqa: E402
from lbr_utils.data import load_domain  # noqa: E402
from lbr_utils.embedders import LLMEmbedder  # noqa: E402
from lbr_utils.lbr import build_generative_batch, configs, generative_loss  # noqa: E402
from lbr_utils.losses import info_nce  # noqa: E402
from lbr_utils.models import (add_bottleneck_tokens, add_lora, attention_implementation,  # noqa: E402
                              frozen_linear_weights_in_bf16, load_causal_lm)
from lbr_utils.pooling import build_inputs  # noqa: E402
from lbr_utils.profiles import get_profile, lbr_profile  # noqa: E402
from lbr_utils.results import save_results  # noqa: E402

MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm"}
CASTS = {"aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous", "aten::empty_strided"}
PATHS = {"before": False, "now": True}


def bucket(event, vocab: int) -> str:
    """The bucket of one profiled op (its ancestors decide the optimizer's)."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == "optimizer":
            return "optimizer"
        parent = parent.cpu_parent
    name, shapes = event.name, str(event.input_shapes)
    if name in MATMUL:
        return "LM head (matmul)" if str(vocab) in shapes else "matmuls (other)"
    if any(a in name.lower() for a in ("attention", "softmax", "flash")):
        return "attention"
    if name in CASTS:
        return "autocast casts and copies"
    if "embedding" in name.lower() or "cross_entropy" in name or "nll_loss" in name:
        return "embedding, loss"
    if name.startswith("aten::"):
        return "norms and element-wise"
    return "other"


def profiled(step_fn, vocab: int) -> dict:
    """Run ``step_fn`` twice (warm-up), then once under the profiler; bucket the ops' self CPU time."""
    for _ in range(2):
        step_fn()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        step_fn()
        wall = time.perf_counter() - start
    totals: dict[str, float] = defaultdict(float)
    for event in prof.events():
        totals[bucket(event, vocab)] += event.self_cpu_time_total / 1e6
    measured = sum(totals.values())
    ordered = sorted(totals.items(), key=lambda kv: -kv[1])
    return {"wall_s": wall, "buckets_s": dict(ordered), "shares": {k: v / measured for k, v in ordered}}


def step(model, optimizer, loss_fn):
    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_fn()
        loss.backward()
        with record_function("optimizer"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args()
    start = time.perf_counter()
    profile_ = lbr_profile(get_profile(args.profile))
    splits = load_domain("medical", profile_)
    stage1, stage2 = configs(profile_, 0)
    pairs = stage1.pairs(splits.gl)
    rows = [pairs[i] for i in PairBatcher(splits.gl, stage1.batch_size).indices(0)]
    out = {}
    for path, now in PATHS.items():
        with ExitStack() as stack:
            model, tok = load_causal_lm(profile_.model)
            add_bottleneck_tokens(model, tok, stage1.max_bottleneck)
            if now:
                stack.enter_context(attention_implementation(model, "eager"))
            vocab = model.get_output_embeddings().weight.shape[0]
            batch = build_generative_batch(tok, rows, stage1.max_input, stage1.max_target, stage1.ratio,
                                           pack_width=stage1.pack_width if now else None)
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=now)
            model.train()
            out[f"stage 1, {path}"] = profiled(step(model, opt, lambda: generative_loss(model, batch)), vocab) | {
                "padding_share": float((batch["segments"] == 0).float().mean())}

            lora = add_lora(model, r=stage2.lora_rank, alpha=2 * stage2.lora_rank, dropout=0.0)
            if now:
                stack.enter_context(frozen_linear_weights_in_bf16(lora))
            embedder = LLMEmbedder(lora, tok, pooling=stage2.pooling, max_length=stage2.max_length)
            pair_batch = PairBatcher(splits.cl, stage2.batch_size)(0)
            width = stage2.pack_width if now else None  # as train_contrastive packs
            enc = {k: build_inputs(tok, pair_batch[k], embedder.pooling, stage2.max_length, pack_width=width)
                   for k in ("queries", "positives")}
            opt2 = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-4, fused=now)
            lora.train()
            loss2 = lambda: info_nce(embedder.forward(enc["queries"]), embedder.forward(enc["positives"]),  # noqa: E731
                                     temperature=stage2.temperature)
            padding = [float(1 - (e["input_ids"] != tok.pad_token_id).float().mean()) for e in enc.values()]
            out[f"stage 2, {path}"] = profiled(step(lora, opt2, loss2), vocab) | {"padding_share": sum(padding) / 2}
    save_results("profile_step", args.profile, out, {"batch_size": stage1.batch_size, "max_length": stage2.max_length,
                                                     "threads": torch.get_num_threads(), "domain": "medical"},
                 seeds=[0], wall_time_s=time.perf_counter() - start)
    for name, r in out.items():
        print(f"{name}: {r['wall_s']:.2f} s, padding {100 * r['padding_share']:.0f}%")
        for k, v in r["shares"].items():
            print(f"   {k:<28} {100 * v:5.1f}%")


if __name__ == "__main__":
    main()
