"""Chapter 6's computation, apart from its presentation: per seed, a compressor trained with its
curriculum and scored on every reading. Cached cells, in their own module so that the chapter's
claims and prose can change without invalidating the runs (the decoding timings, which these do not
need, are cells of their own: ``_timing_cells``)."""

from __future__ import annotations

import gc
from dataclasses import replace

from ..compress import CompressionConfig, Example, evaluate_reading, qa_examples, train_compressor
from ..data import load_domain
from ..models import load_causal_lm
from ..pooling import token_ids
from ..profiles import Profile
from ..runcache import cache_key, cached_json, code_fingerprint
from ._compression_plan import CLAIM_RATIO, DOMAIN, RATIOS

# Examples per task (fewer where the profile has fewer evaluation / dev queries). 100 QA dev examples:
# one is then 1 point of exact match, the size of the convergence rule's threshold. Reconstruction's
# token accuracy averages over a passage's tokens, so 50 passages give a curve as steady at half the cost
# (the dev curve's greedy decoding was about a quarter of a seed's time).
N_TEST, N_DEV, N_DEV_RECONSTRUCT = 100, 100, 50


def compression_config(profile: Profile, seed: int) -> CompressionConfig:
    """Reconstruction alone for a third of the steps, then both tasks; six dev points a run and an
    early one. Half the rows are read at the judged ratio, the rest spread over the sweep. 640 steps
    of 8 at `cpu`: 240 gave about 400 rows compressed at the judged ratio, too few to learn a reading
    from, and at 480 a QA example was still read compressed at that ratio about a quarter of a time.
    Targets reach 96 tokens: a reconstructed passage is as long as a QA passage (:func:`datasets`)."""
    steps = 16 * profile.generative_steps
    return CompressionConfig(ratios=RATIOS, steps=steps, batch_size=min(8, profile.batch_size), seed=seed,
                             max_target=min(96, profile.max_length), reconstruction_steps=steps // 3,
                             eval_every=max(1, steps // 6), dev_ratio=CLAIM_RATIO, focus_share=0.5)


def passages(records, n: int, seed: int) -> list[Example]:
    """``n`` passages to reconstruct, shaped like the QA ones (three answer cards): the curriculum's
    first phase then teaches the bottleneck to hold a passage of the length it must answer from (a
    single card is a third of it, and fills a third of the bottleneck tokens)."""
    return [Example(e.passage) for e in qa_examples(records, n, seed=seed)]


def datasets(profile: Profile, seed: int, tokenizer, max_input: int) -> tuple[list, dict, dict]:
    """Training examples (GL split), dev examples (dev records) and test examples (evaluation
    records, never seen) per task, every passage within ``max_input`` tokens: a longer one would
    lose its end in every reading, and a QA passage the fact asked about with it. (QA passages are
    drawn three times over and the first that fit are kept: three medical facts often pass 96 tokens.)"""
    def fitting(examples: list, n: int) -> list:
        return [e for e in examples if len(token_ids(tokenizer, e.passage)) <= max_input][:n]

    splits = load_domain(DOMAIN, profile, seed)
    half, n_dev, n_test = len(splits.gl) // 2, min(N_DEV, profile.n_dev), min(N_TEST, profile.n_eval)
    # Reconstruction passages are their own draws (seed + 2), not the QA passages without their questions.
    train = (fitting(passages(splits.gl, 3 * half, seed + 2), half)
             + fitting(qa_examples(splits.gl, 3 * half, seed=seed), half))
    n_recon = min(N_DEV_RECONSTRUCT, n_dev)
    dev = {"reconstruct": fitting(passages(splits.dev_records, 3 * n_recon, seed + 2), n_recon),
           "qa": fitting(qa_examples(splits.dev_records, 3 * n_dev, seed=seed), n_dev)}
    test = {"reconstruct": fitting(passages(splits.eval_records, 3 * n_test, seed + 2), n_test),
            "qa": fitting(qa_examples(splits.eval_records, 3 * n_test, seed=seed + 1), n_test)}
    return train, dev, test


def _quality(profile: Profile, seed: int) -> dict[str, list]:
    cfg = compression_config(profile, seed)
    model, tok = load_causal_lm(profile.model)
    train_set, dev, test = datasets(profile, seed, tok, cfg.max_input)
    result = train_compressor(model, tok, train_set, cfg, show_progress=True, dev=dev)
    rows = []
    for task, examples in test.items():
        readings = [(mode, r) for r in RATIOS for mode in ("compressed", "truncated")] + [("full", None)]
        for mode, ratio in readings:
            scores = evaluate_reading(model, tok, examples, mode, ratio or 1.0, cfg)
            rows.append({"domain": DOMAIN, "task": task, "mode": mode, "ratio": ratio, **scores})
    # Closed book: the question without its passage, what the model knows (or guesses) on its own.
    closed = [replace(e, passage="") for e in test["qa"]]
    rows.append({"domain": DOMAIN, "task": "qa", "mode": "closed book", "ratio": None,
                 **evaluate_reading(model, tok, closed, "full", 1.0, cfg)})
    training = [{"train_examples": len(train_set), "test_examples": {k: len(v) for k, v in test.items()},
                 **result.summary()}]
    del model
    gc.collect()  # the next seed's model trains in this process: free this one's weights first
    return {"quality": rows, "training": training}


def quality_cell(profile: Profile, seed: int) -> dict[str, list]:
    key = cache_key(code_fingerprint(__name__), part="quality", profile=profile.to_dict(), seed=seed)
    return cached_json("ch06_cells", key, lambda: _quality(profile, seed))
