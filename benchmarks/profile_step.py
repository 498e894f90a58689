"""Where a training step's time goes: torch.profiler over real stage-1 and stage-2 steps of SmolLM2.

    python benchmarks/profile_step.py --profile cpu

One stage-1 step (IB-GL, SFT style, full fine-tuning) and one stage-2 step (LoRA contrastive learning
on the last bottleneck token) at the LBR chapters' batch and lengths, each a forward, backward and
AdamW update under bf16 autocast as in ``lbr_utils.train``. The profiler's self CPU time of every op
is put in one bucket: matmuls (split into the LM head and the rest by the vocabulary dimension),
attention, norms and element-wise ops, autocast casts and copies, the optimizer, and the rest. The
share of padding tokens in each batch is reported beside it (their matmuls are wasted work).
Writes ``results/<profile>/profile_step.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lbr_utils.batching import PairBatcher  # noqa: E402
from lbr_utils.data import load_domain  # noqa: E402
from lbr_utils.embedders import LLMEmbedder  # noqa: E402
from lbr_utils.lbr import build_generative_batch, configs, generative_loss  # noqa: E402
from lbr_utils.losses import info_nce  # noqa: E402
from lbr_utils.models import add_bottleneck_tokens, add_lora, load_causal_lm  # noqa: E402
from lbr_utils.pooling import build_inputs  # noqa: E402
from lbr_utils.profiles import get_profile, lbr_profile  # noqa: E402
from lbr_utils.results import save_results  # noqa: E402

MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm"}
ATTENTION = ("attention", "softmax", "_efficient", "flash")
NORM_ELEMENTWISE = {"aten::mul", "aten::add", "aten::add_", "aten::mul_", "aten::rsqrt", "aten::pow", "aten::mean",
                    "aten::silu", "aten::neg", "aten::cat", "aten::div", "aten::sub", "aten::sum", "aten::exp",
                    "aten::sigmoid", "aten::silu_backward", "aten::where", "aten::masked_fill", "aten::tanh",
                    "aten::sqrt", "aten::addcmul_", "aten::addcdiv_", "aten::lerp_", "aten::_foreach_mul_"}
CASTS = {"aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous", "aten::empty_strided"}


def bucket(name: str, shapes: str, vocab: int) -> str:
    if name.startswith("Optimizer.") or "adam" in name.lower() or name.startswith("aten::_foreach"):
        return "optimizer"
    if name in MATMUL:
        return "LM head (matmul)" if str(vocab) in shapes else "matmuls (other)"
    if any(a in name.lower() for a in ATTENTION):
        return "attention"
    if name in CASTS:
        return "autocast casts and copies"
    if name in NORM_ELEMENTWISE or "norm" in name.lower():
        return "norms and element-wise"
    if "embedding" in name.lower() or "cross_entropy" in name or "nll_loss" in name or "log_softmax" in name:
        return "embedding, loss"
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
    for event in prof.key_averages(group_by_input_shape=True):
        totals[bucket(event.key, str(event.input_shapes), vocab)] += event.self_cpu_time_total / 1e6
    measured = sum(totals.values())
    return {"wall_s": wall, "buckets_s": dict(sorted(totals.items(), key=lambda kv: -kv[1])),
            "shares": {k: v / measured for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args()
    start = time.perf_counter()
    profile_ = lbr_profile(get_profile(args.profile))
    splits = load_domain("medical", profile_)
    stage1, stage2 = configs(profile_, 0)
    out = {}

    # Stage 1: IB-GL (SFT), full fine-tuning.
    model, tok = load_causal_lm(profile_.model)
    add_bottleneck_tokens(model, tok, stage1.max_bottleneck)
    vocab = model.get_output_embeddings().weight.shape[0]
    pairs = stage1.pairs(splits.gl)
    batch = build_generative_batch(tok, [pairs[i] for i in PairBatcher(splits.gl, stage1.batch_size).indices(0)],
                                   stage1.max_input, stage1.max_target, stage1.ratio)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()

    def stage1_step() -> None:
        with record_function("forward"), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = generative_loss(model, batch)
        with record_function("backward"):
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    out["stage 1 (IB-GL, SFT, full fine-tuning)"] = profiled(stage1_step, vocab) | {
        "tokens": int(batch["input_ids"].numel()), "padding_share": float((batch["segments"] == 0).float().mean())}

    # Stage 2: LoRA contrastive on the last bottleneck token, from the same weights.
    lora = add_lora(model, r=stage2.lora_rank, alpha=2 * stage2.lora_rank, dropout=0.0)
    embedder = LLMEmbedder(lora, tok, pooling=stage2.pooling, max_length=stage2.max_length)
    pair_batch = PairBatcher(splits.cl, stage2.batch_size)(0)
    enc = {k: build_inputs(tok, pair_batch[k], embedder.pooling, stage2.max_length) for k in ("queries", "positives")}
    opt2 = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-4)
    lora.train()

    def stage2_step() -> None:
        with record_function("forward"), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = info_nce(embedder.forward(enc["queries"]), embedder.forward(enc["positives"]),
                            temperature=stage2.temperature)
        with record_function("backward"):
            loss.backward()
        opt2.step()
        opt2.zero_grad(set_to_none=True)

    padding = [float(1 - e["attention_mask"].float().mean()) for e in enc.values()]
    out["stage 2 (LoRA contrastive, bottleneck pooling)"] = profiled(stage2_step, vocab) | {
        "tokens": sum(int(e["input_ids"].numel()) for e in enc.values()), "padding_share": sum(padding) / 2}
    save_results("profile_step", args.profile, out, {"batch_size": stage1.batch_size, "max_length": stage2.max_length,
                                                     "threads": torch.get_num_threads(), "domain": "medical"},
                 seeds=[0], wall_time_s=time.perf_counter() - start)
    for name, r in out.items():
        print(f"{name}: {r['wall_s']:.2f} s, padding {100 * r['padding_share']:.0f}%")
        for k, v in r["shares"].items():
            print(f"   {k:<28} {100 * v:5.1f}%")


if __name__ == "__main__":
    main()
