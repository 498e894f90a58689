"""Chapter 6's experiment: how much of a passage survives compression into k bottleneck tokens?

One SmolLM2 is trained on all three reading modes (compressed, truncated to the same k tokens, full),
on passages from the GL splits of every domain; it is then scored on passages built from the
isolated evaluation records, which it never saw, at every compression ratio of the sweep.
"""

from __future__ import annotations

import pandas as pd

from ..compress import (CompressionConfig, decoding_cost, evaluate_reading, qa_examples, reconstruction_examples,
                        train_compressor)
from ..data import DOMAINS, load_domain
from ..models import add_bottleneck_tokens, load_causal_lm
from ..profiles import get_profile
from ..results import save_results, timer
from ..stats import survey_claim

NAME = __name__.rpartition(".")[2]
TITLE = "Long-context compression (chapter 6)"
QA_DOMAINS = ("medical", "chemistry")  # their answer cards carry a short fact (a code, a formula) to ask about


def datasets(profile, seed: int) -> tuple[list, dict]:
    """Training examples (GL splits) and test examples per (domain, task) (evaluation records)."""
    splits = {d: load_domain(d, profile, seed) for d in DOMAINS}
    n_test = profile.n_generate
    half = {d: profile.for_domain(d).n_gl // 2 for d in DOMAINS}  # a domain's own GL size (gpu caps it)
    train = [e for d in DOMAINS for e in reconstruction_examples(splits[d].gl, half[d], seed)]
    train += [e for d in QA_DOMAINS for e in qa_examples(splits[d].gl, half[d], seed=seed)]
    test = {(d, "reconstruct"): reconstruction_examples(splits[d].eval_records, n_test, seed) for d in DOMAINS}
    test |= {(d, "qa"): qa_examples(splits[d].eval_records, n_test, seed=seed + 1) for d in QA_DOMAINS}
    return train, test


def run(profile_name: str, seed: int = 0, show_progress: bool = True) -> dict[str, pd.DataFrame]:
    profile = get_profile(profile_name)
    cfg = CompressionConfig(steps=2 * profile.generative_steps, batch_size=profile.batch_size, seed=seed,
                            ratios=profile.compression_ratios or CompressionConfig.ratios,
                            max_target=min(64, profile.max_length))
    with timer() as t:
        train_set, test = datasets(profile, seed)
        model, tok = load_causal_lm(profile.model)
        result = train_compressor(model, tok, train_set, cfg, show_progress=show_progress)
        rows = []
        for (domain, task), examples in test.items():
            for ratio in cfg.ratios:
                for mode in ("compressed", "truncated"):
                    rows.append({"domain": domain, "task": task, "mode": mode, "ratio": ratio,
                                 **evaluate_reading(model, tok, examples, mode, ratio, cfg)})
            rows.append({"domain": domain, "task": task, "mode": "full", "ratio": None,
                         **evaluate_reading(model, tok, examples, "full", 1.0, cfg)})
        # Decoding cost on long passages: concatenated evaluation passages, any model will do.
        base, base_tok = load_causal_lm(profile.model)
        add_bottleneck_tokens(base, base_tok, 2048 // 8 + 1)
        long_text = " ".join(e.passage for examples in test.values() for e in examples)
        costs = []
        for n in (256, 1024, 2048):
            passage = base_tok.decode(base_tok(long_text, add_special_tokens=False)["input_ids"][:n])
            for ratio in (None, 8.0):
                costs.append({"reading": "full" if ratio is None else "compressed (r=8)",
                              **decoding_cost(base, base_tok, passage, ratio)})
    tables = {"quality": pd.DataFrame(rows), "decoding": pd.DataFrame(costs),
              "training": pd.DataFrame({"step": range(1, len(result.losses) + 1), "loss": result.losses})}
    config = {"profile": profile.to_dict(), "compression": cfg.__dict__, "train_examples": len(train_set),
              "test_examples": {f"{d}/{task}": len(v) for (d, task), v in test.items()},
              "train_time_s": result.wall_time_s}
    save_results(NAME, profile_name, tables, config, [seed], t["seconds"])
    return tables


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """Chapter 6 judged: at the same token budget, is a learned summary better than the first tokens,
    and does decoding from it pay off? (Scores in the file are x100 already.)"""
    if NAME not in records:
        return {}
    metrics = records[NAME]["metrics"]
    quality = pd.DataFrame(metrics["quality"])
    budgeted = quality[quality["mode"] != "full"]

    def gains(task: str, metric: str, ratio: float | None = None) -> list[float]:
        sub = budgeted[(budgeted.task == task) & ((budgeted.ratio == ratio) if ratio else True)]
        wide = sub.pivot_table(index=["domain", "ratio"], columns="mode", values=metric)
        return ((wide["compressed"] - wide["truncated"]) / 100).tolist()

    decoding = pd.DataFrame(metrics["decoding"]).pivot_table(index="passage_tokens", columns="reading",
                                                             values="ms_per_token")
    full, compressed = decoding["full"], decoding.drop(columns="full").iloc[:, 0]
    return {"survey": pd.DataFrame([
        survey_claim("at the same token budget (r = 8), a compressed context answers more questions than truncation",
                     "survey, embedding understanding", "QA exact match, per domain (chapter 6)",
                     gains("qa", "exact_match", 8.0), +1),
        survey_claim("at the same token budget, a compressed context reconstructs the passage better than truncation",
                     "survey, embedding understanding", "token accuracy, per (domain, ratio) (chapter 6)",
                     gains("reconstruct", "token_accuracy"), +1),
        survey_claim("decoding from the compressed context (r = 8) is faster per generated token",
                     "survey, embedding understanding", "share of time per token saved, per passage length (chapter 6)",
                     ((full - compressed) / full).tolist(), +1)])}
