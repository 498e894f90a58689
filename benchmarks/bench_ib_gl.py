"""IB-GL step time vs. standard generative training on the same batches (a benchmark, not a test).

    python benchmarks/bench_ib_gl.py --profile cpu

The paper reports IB-GL (SFT-style) at 1.03x the time of standard SFT: the only extra work is k
bottleneck tokens and a custom mask. PT-style IB-GL reconstructs the whole input, so its sequences
are about twice as long as standard PT's. One process, one model per arm, the arms interleaved step
by step (so drift in machine speed hits every arm alike); each step is a full forward, backward and
AdamW update as ``lbr_utils.train`` runs it (packed batches, eager attention, fused AdamW, bf16
autocast). Tokens per step count real tokens, not padding.
Results go to ``results/<profile>/bench_ib_gl.json`` with provenance.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import ExitStack

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lbr_utils.batching import PairBatcher  # noqa: E402
from lbr_utils.data import load_domain  # noqa: E402
from lbr_utils.lbr import GenerativeConfig, build_generative_batch, generative_loss  # noqa: E402
from lbr_utils.models import add_bottleneck_tokens, attention_implementation, load_causal_lm  # noqa: E402
from lbr_utils.profiles import get_profile  # noqa: E402
from lbr_utils.results import save_results  # noqa: E402

ARMS = {"standard SFT": ("sft", False), "IB-GL (SFT)": ("sft", True),
        "standard PT": ("pt", False), "IB-GL (PT)": ("pt", True)}


def step_times(profile_name: str, steps: int, warmup: int) -> dict:
    with ExitStack() as stack:
        return _step_times(profile_name, steps, warmup, stack)


def _step_times(profile_name: str, steps: int, warmup: int, stack: ExitStack) -> dict:
    profile = get_profile(profile_name)
    records = load_domain("medical", profile).gl
    base = GenerativeConfig(batch_size=profile.batch_size, max_input=min(64, profile.max_length),
                            max_target=min(32, profile.max_length))
    batcher = PairBatcher(records, base.batch_size, seed=0)
    arms = {}
    for name, (style, bottleneck) in ARMS.items():
        model, tok = load_causal_lm(profile.model)
        add_bottleneck_tokens(model, tok, base.max_bottleneck)  # same vocabulary size in every arm
        cfg = GenerativeConfig(style=style, bottleneck=bottleneck, max_input=base.max_input, max_target=base.max_target)
        pairs = cfg.pairs(records)
        batches = [build_generative_batch(tok, [pairs[i] for i in batcher.indices(s)], cfg.max_input, cfg.max_target,
                                          cfg.ratio if bottleneck else None, pack_width=cfg.pack_width)
                   for s in range(warmup + steps)]
        stack.enter_context(attention_implementation(model, "eager"))
        arms[name] = {"model": model.train(), "opt": torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True),
                      "batches": batches, "times": [],
                      "tokens": sum(int((b["segments"] != 0).sum()) for b in batches[warmup:])}
    for s in range(warmup + steps):
        for arm in arms.values():
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = generative_loss(arm["model"], arm["batches"][s])
            loss.backward()
            arm["opt"].step()
            arm["opt"].zero_grad(set_to_none=True)
            if s >= warmup:
                arm["times"].append(time.perf_counter() - start)
    out = {name: {"median_step_s": statistics.median(a["times"]), "mean_step_s": statistics.fmean(a["times"]),
                  "real_tokens_per_step": a["tokens"] / steps} for name, a in arms.items()}
    out["ratio IB-GL/standard (SFT)"] = out["IB-GL (SFT)"]["median_step_s"] / out["standard SFT"]["median_step_s"]
    out["ratio IB-GL/standard (PT)"] = out["IB-GL (PT)"]["median_step_s"] / out["standard PT"]["median_step_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    metrics = step_times(args.profile, args.steps, args.warmup)
    save_results("bench_ib_gl", args.profile, metrics, {"steps": args.steps, "warmup": args.warmup,
                                                        "threads": torch.get_num_threads(), "domain": "medical"},
                 seeds=[0], wall_time_s=time.perf_counter() - start)
    print(metrics)


if __name__ == "__main__":
    main()
