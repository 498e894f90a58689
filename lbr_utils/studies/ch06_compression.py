"""Chapter 6's experiment: how much of a passage survives compression into k bottleneck tokens, and
when does decoding from them pay?

On the medical domain, one SmolLM2 per seed is trained on all three reading modes (compressed,
truncated to the same k tokens, full) with a curriculum: reconstruction first, then reconstruction
and QA, a dev curve as it goes. It is scored per example on passages built from the isolated
evaluation records, at every ratio of the sweep. Separately, on an otherwise idle model, the time
to prefill a long passage and decode an answer is measured, full and compressed, several times.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..compress import (CompressionConfig, decoding_cost, evaluate_reading, qa_examples, reconstruction_examples,
                        train_compressor)
from ..data import load_domain
from ..models import add_bottleneck_tokens, load_causal_lm
from ..profiles import Profile, get_profile
from ..results import load_tables, save_results, timer
from ..runcache import cache_key, cached_json, code_fingerprint
from ..stats import claim_family, display_claims, judged_claim, last_quarter_gain, unconverged

NAME = __name__.rpartition(".")[2]
TITLE = "Long-context compression (chapter 6)"
DOMAIN = "medical"  # its answer cards carry a short fact (the ICD code) to ask about
RATIOS = (2.0, 4.0, 8.0, 16.0)
CLAIM_RATIO = 8.0
N_TEST, N_DEV = 100, 30  # examples per task (fewer where the profile has fewer evaluation / dev queries)
REPEATS = 5  # timings per (passage length, reading)


def timing_plan(profile: Profile) -> tuple[tuple[int, ...], int]:
    """Passage lengths to time (2, 8 and 16 times the profile's text length: 256-2048 tokens at
    `cpu`) and the answer length (half the text length: 64 tokens at `cpu`, a couple of sentences)."""
    return tuple(f * profile.max_length for f in (2, 8, 16)), profile.max_length // 2


def compression_config(profile: Profile, seed: int) -> CompressionConfig:
    """Reconstruction alone for a third of the steps, then both tasks; six dev points a run."""
    steps = 6 * profile.generative_steps
    return CompressionConfig(ratios=RATIOS, steps=steps, batch_size=min(8, profile.batch_size), seed=seed,
                             max_target=min(64, profile.max_length), reconstruction_steps=steps // 3,
                             eval_every=max(1, steps // 6), dev_ratio=CLAIM_RATIO)


def datasets(profile: Profile, seed: int) -> tuple[list, dict, dict]:
    """Training examples (GL split), dev examples (dev records) and test examples (evaluation
    records, never seen) per task."""
    splits = load_domain(DOMAIN, profile, seed)
    half, n_dev, n_test = len(splits.gl) // 2, min(N_DEV, profile.n_dev), min(N_TEST, profile.n_eval)
    train = reconstruction_examples(splits.gl, half, seed) + qa_examples(splits.gl, half, seed=seed)
    dev = {"reconstruct": reconstruction_examples(splits.dev_records, n_dev, seed),
           "qa": qa_examples(splits.dev_records, n_dev, seed=seed)}
    test = {"reconstruct": reconstruction_examples(splits.eval_records, n_test, seed),
            "qa": qa_examples(splits.eval_records, n_test, seed=seed + 1)}
    return train, dev, test


def _quality(profile: Profile, seed: int) -> dict[str, list]:
    cfg = compression_config(profile, seed)
    train_set, dev, test = datasets(profile, seed)
    model, tok = load_causal_lm(profile.model)
    result = train_compressor(model, tok, train_set, cfg, show_progress=True, dev=dev)
    rows = []
    for task, examples in test.items():
        readings = [(mode, r) for r in RATIOS for mode in ("compressed", "truncated")] + [("full", None)]
        for mode, ratio in readings:
            scores = evaluate_reading(model, tok, examples, mode, ratio or 1.0, cfg)
            rows.append({"domain": DOMAIN, "task": task, "mode": mode, "ratio": ratio, **scores})
    training = [{"train_examples": len(train_set), **result.summary()}]
    return {"quality": rows, "training": training}


def _timing(profile: Profile) -> dict[str, list]:
    lengths, answer = timing_plan(profile)
    model, tok = load_causal_lm(profile.model)
    add_bottleneck_tokens(model, tok, max(lengths) // int(CLAIM_RATIO) + 1)
    splits = load_domain(DOMAIN, profile, 0)
    long_text = " ".join(r.answer for r in splits.eval_records + splits.gl + splits.cl)
    ids = tok(long_text, add_special_tokens=False)["input_ids"]
    if len(ids) < max(lengths):
        raise ValueError(f"the domain's text holds {len(ids)} tokens, fewer than {max(lengths)}")
    rows = []
    for n in lengths:
        passage = tok.decode(ids[:n])
        decoding_cost(model, tok, passage, None, new_tokens=2)  # warm up the kernels for this length
        for repeat in range(REPEATS):
            for ratio in (None, CLAIM_RATIO):
                rows.append({"reading": "full" if ratio is None else f"compressed (r={CLAIM_RATIO:g})",
                             "repeat": repeat, "answer_tokens": answer,
                             **decoding_cost(model, tok, passage, ratio, new_tokens=answer)})
    return {"decoding": rows}


def run(profile_name: str, seeds: tuple[int, ...] | None = None) -> dict[str, pd.DataFrame]:
    """Quality on every seed, and the timing (cached cells: the chapter can run in parts)."""
    profile = get_profile(profile_name)
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    out: dict[str, list] = {}
    fingerprint = code_fingerprint(__name__)
    with timer() as t:
        for seed in seeds:
            key = cache_key(fingerprint, part="quality", profile=profile.to_dict(), seed=seed)
            for table, rows in cached_json("ch06_cells", key, lambda: _quality(profile, seed)).items():
                out.setdefault(table, []).extend(dict(row, seed=seed) for row in rows)
        key = cache_key(fingerprint, part="timing", profile=profile.to_dict())
        out |= cached_json("ch06_cells", key, lambda: _timing(profile))
    cfg = compression_config(profile, seeds[0])
    config = {"profile": profile.to_dict(), "domain": DOMAIN, "compression": cfg.__dict__, "test_examples": N_TEST,
              "dev_examples": N_DEV, "passage_tokens": timing_plan(profile)[0], "answer_tokens": timing_plan(profile)[1],
              "repeats": REPEATS}
    save_results(NAME, profile_name, out, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in out.items()}


def break_even(decoding: pd.DataFrame) -> pd.DataFrame:
    """Per passage length (medians over repeats): prefill and per-token time of each reading, the end
    to end time with the timed answer length, and the answer length from which the compressed reading is faster end to end (its extra prefill paid
    back by cheaper steps; "never" when its steps are not cheaper)."""
    med = decoding.groupby(["passage_tokens", "reading"])[["prefill_s", "ms_per_token", "end_to_end_s"]].median()
    rows = []
    for n, g in med.groupby(level=0):
        g = g.droplevel(0)
        full, comp = g.loc["full"], g.drop(index="full").iloc[0]
        saved_ms = full.ms_per_token - comp.ms_per_token
        extra_ms = 1000 * (comp.prefill_s - full.prefill_s)
        rows.append({"passage tokens": n, "prefill full (s)": full.prefill_s, "prefill compressed (s)": comp.prefill_s,
                     "ms/token full": full.ms_per_token, "ms/token compressed": comp.ms_per_token,
                     "end to end, full (s)": full.end_to_end_s, "end to end, compressed (s)": comp.end_to_end_s,
                     "compressed faster from (answer tokens)": ("never" if saved_ms <= 0 else
                                                                int(max(0, np.ceil(extra_ms / saved_ms))))})
    return pd.DataFrame(rows)


def _per_example(quality: pd.DataFrame, task: str, mode: str, ratio: float | None) -> pd.DataFrame:
    rows = quality[(quality.task == task) & (quality["mode"] == mode)]
    return rows[rows.ratio.isna()] if ratio is None else rows[rows.ratio == ratio]


def _saving(decoding: pd.DataFrame, column: str) -> dict[int, np.ndarray]:
    """Per passage length: the share of ``column`` the compressed reading saves, repeat by repeat."""
    out = {}
    for n, g in decoding.groupby("passage_tokens"):
        wide = g.pivot_table(index="repeat", columns="reading", values=column)
        full = wide["full"]
        out[n] = ((full - wide.drop(columns="full").iloc[:, 0]) / full).to_numpy()
    return out


def survey_claims(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One Holm family: at the same token budget (r = 8), compressed against truncated per test
    example on every seed (not judged if the dev curve still climbed), and the time saved per token
    and end to end, per passage length over repeats."""
    quality = tables["quality"]
    late = set()
    for r in tables["training"].to_dict(orient="records"):
        for task in ("qa", "reconstruct"):
            found = last_quarter_gain(r["dev_curve"], int(r["steps"]), key=f"{task}, compressed")
            if found is not None and found[2] >= 1.0:
                late.add(f"compressed ({task})")

    def quality_claim(text: str, task: str) -> dict:
        a, b = (_per_example(quality, task, mode, CLAIM_RATIO) for mode in ("compressed", "truncated"))
        diffs = {s: np.subtract(a[a.seed == s].per_example.iloc[0], b[b.seed == s].per_example.iloc[0])
                 for s in sorted(set(a.seed) & set(b.seed))}
        row = judged_claim(text, diffs, +1, source="survey, embedding understanding", a=f"compressed ({task})",
                           b="truncated")
        return unconverged(row, late)

    decoding = tables["decoding"]
    answer = int(decoding.answer_tokens.iloc[0])
    return claim_family([
        quality_claim(f"at the same token budget (r = {CLAIM_RATIO:g}), a compressed context answers more questions "
                      "than truncation (exact match)", "qa"),
        quality_claim(f"at the same token budget (r = {CLAIM_RATIO:g}), a compressed context reconstructs the passage "
                      "better than truncation (token accuracy)", "reconstruct"),
        judged_claim(f"decoding from the compressed context (r = {CLAIM_RATIO:g}) is faster per generated token "
                     "(share of time saved)", _saving(decoding, "ms_per_token"), +1,
                     source="survey, embedding understanding"),
        judged_claim(f"end to end (prefill + a {answer}-token answer), the compressed context is faster "
                     "(share of time saved)", _saving(decoding, "end_to_end_s"), +1,
                     source="survey, embedding understanding")])


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    tables = load_tables(records[NAME])
    if "per_example" not in tables["quality"]:  # a results file from before per-example scores
        return {}
    return {"survey": display_claims(survey_claims(tables))}
