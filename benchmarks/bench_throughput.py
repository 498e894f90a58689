"""Throughput benchmarks (not timed tests): run alone on an idle machine, in one process.

    python benchmarks/bench_throughput.py --profile cpu

1. Embedding: texts/s of ``LLMEmbedder`` vs. sentence-transformers wrapping the same SmolLM2
   weights with the same (mean) pooling, in fp32 and in bf16.
2. Training: tokens/s of our loop (``lbr_utils.train``, accelerate + bf16 autocast) vs. a naive
   fp32 loop on the same contrastive batches, and the achieved FLOP/s of each as a share of the
   bf16 matmul peak measured in this same run.
Results go to ``results/<profile>/benchmarks.json`` with provenance.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lbr_utils.batching import PairBatcher  # noqa: E402
from lbr_utils.data import load_domain  # noqa: E402
from lbr_utils.embedders import LLMEmbedder  # noqa: E402
from lbr_utils.losses import info_nce  # noqa: E402
from lbr_utils.models import decoder, load_causal_lm, smollm2_path  # noqa: E402
from lbr_utils.pooling import build_inputs, get_pooling  # noqa: E402
from lbr_utils.profiles import get_profile  # noqa: E402
from lbr_utils.results import save_results  # noqa: E402
from lbr_utils.train import TrainConfig, train  # noqa: E402


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a square matmul in ``dtype`` (best of ``repeats``)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_embedding(texts: list[str], max_length: int, batch_size: int) -> dict:
    from sentence_transformers import SentenceTransformer, models

    model, tok = load_causal_lm("smollm2-135m")
    st = SentenceTransformer(modules=[models.Transformer(str(smollm2_path()), max_seq_length=max_length),
                                      models.Pooling(model.config.hidden_size, pooling_mode="mean")], device="cpu")
    st.tokenizer.pad_token = st.tokenizer.pad_token or tok.pad_token
    out = {}
    for precision in ("fp32", "bf16"):
        ours = LLMEmbedder(model, tok, "mean", batch_size=batch_size, max_length=max_length, bf16=precision == "bf16")
        ours.embed(texts[:batch_size])  # warm-up
        t_ours = _timed(lambda: ours.replace().embed(texts))  # a copy with an empty cache embeds every text
        st_model = st.to(torch.bfloat16) if precision == "bf16" else st.to(torch.float32)
        st_model.encode(texts[:batch_size], batch_size=batch_size)
        t_st = _timed(lambda: st_model.encode(texts, batch_size=batch_size, show_progress_bar=False))
        out[precision] = {"ours_texts_per_s": len(texts) / t_ours, "st_texts_per_s": len(texts) / t_st,
                          "speedup_vs_st": t_st / t_ours}
    st.to(torch.float32)
    out["bf16_ours_vs_fp32_st"] = out["bf16"]["ours_texts_per_s"] / out["fp32"]["st_texts_per_s"]
    return out


def bench_training(records, steps: int, batch_size: int, max_length: int) -> dict:
    """Tokens/s and FLOP/s (6 x parameters x tokens) of our loop vs. a naive fp32 loop."""
    batcher = PairBatcher(records, batch_size, seed=0)
    pooling = get_pooling("mean")

    def setup():
        model, tok = load_causal_lm("smollm2-135m")
        emb = LLMEmbedder(model, tok, "mean", max_length=max_length)

        def encode(texts):
            return emb.forward(build_inputs(tok, texts, pooling, max_length))

        def loss_fn(batch):
            return info_nce(encode(batch["queries"]), encode(batch["positives"]))

        n_tokens = sum(int(build_inputs(tok, batcher(s)["queries"], pooling, max_length)["attention_mask"].numel()
                           + build_inputs(tok, batcher(s)["positives"], pooling, max_length)["attention_mask"].numel())
                       for s in range(steps))
        return model, loss_fn, n_tokens

    model, loss_fn, n_tokens = setup()
    n_params = sum(p.numel() for p in decoder(model).parameters())
    start = time.perf_counter()
    train(model, loss_fn, batcher, TrainConfig(steps=steps, lr=1e-5, show_progress=False, bf16=True))
    t_ours = time.perf_counter() - start

    model, loss_fn, _ = setup()  # naive: plain fp32 AdamW loop, no autocast
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        loss = loss_fn(batcher(step))
        loss.backward()
        opt.step()
        opt.zero_grad()
    t_naive = time.perf_counter() - start
    flops = 6 * n_params * n_tokens  # forward + backward, padded tokens included (they are computed)
    return {"tokens": n_tokens, "params": n_params, "ours_tokens_per_s": n_tokens / t_ours,
            "naive_tokens_per_s": n_tokens / t_naive, "speedup_vs_naive": t_naive / t_ours,
            "ours_flops": flops / t_ours, "naive_flops": flops / t_naive}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    profile = get_profile(args.profile)
    splits = load_domain("medical", profile)
    texts = [r.answer for r in splits.gl][: args.texts]
    start = time.perf_counter()
    peak = {"bf16": matmul_peak(torch.bfloat16), "fp32": matmul_peak(torch.float32)}
    embedding = bench_embedding(texts, profile.max_length, profile.embed_batch_size)
    training = bench_training(splits.cl, args.steps, profile.batch_size, 64)
    training["ours_share_of_bf16_peak"] = training["ours_flops"] / peak["bf16"]
    training["naive_share_of_bf16_peak"] = training["naive_flops"] / peak["bf16"]
    metrics = {"matmul_peak_flops": peak, "embedding": embedding, "training": training}
    save_results("benchmarks", args.profile, metrics, {"texts": len(texts), "steps": args.steps,
                                                       "threads": torch.get_num_threads()}, seeds=[0],
                 wall_time_s=time.perf_counter() - start)
    print(metrics)


if __name__ == "__main__":
    main()
