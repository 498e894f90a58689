"""Chapter 5's experiments: the paper's stage ablation (Table 3), representation vs generation
(Table 2) and the separation ratio, on every domain and seed.

Every embedding here is the same one, LBR's: the last bottleneck token's state after ``[x, B]``
(bottleneck tokens are added, untrained, to models whose stage 1 had none). So the rows differ only
in what came before, which is the paper's question: does learning the domain through the bottleneck
first make a better embedder than contrastive learning alone, or than ordinary generative learning?
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .contrastive import ContrastiveConfig, train_contrastive
from .data import DOMAINS, DomainSplits, load_domain
from .embedders import LLMEmbedder
from .evaluate import evaluate_models
from .generate import generation_scores, greedy_generate
from .geometry import separation_ratio
from .lbr import GenerativeConfig, cache_key, cached_json, stage1_model
from .models import add_bottleneck_tokens, load_causal_lm
from .pooling import bottleneck_pooling, token_ids
from .profiles import Profile, get_profile, lbr_profile
from .results import save_results, timer

EXPERIMENT = "lbr_stages"
RATIO = 8.0  # the paper's default compression ratio
TABLE2 = ("LLM", "LLM+GL", "LLM+IB-GL", "LLM+CL")  # the models whose generation Table 2 scores


def max_length(profile: Profile) -> int:
    """Tokens of a text the LBR study reads, in stage 1, stage 2 and evaluation alike: then every
    bottleneck token an evaluated text needs exists, and stage 2 has trained with it."""
    return min(64, profile.max_length)


def configs(profile: Profile, seed: int, ratio: float = RATIO) -> tuple[GenerativeConfig, ContrastiveConfig]:
    """Stage-1 (IB-GL; ``bottleneck=False`` for GL) and stage-2 configs of one profile and seed."""
    stage1 = GenerativeConfig(style="sft", bottleneck=True, ratio=ratio, steps=profile.generative_steps,
                              batch_size=profile.batch_size, max_input=max_length(profile),
                              max_target=min(32, profile.max_length), seed=seed)
    stage2 = ContrastiveConfig(steps=profile.train_steps, batch_size=profile.batch_size,
                               max_length=max_length(profile), pooling=bottleneck_pooling(ratio), seed=seed)
    return stage1, stage2


def _generation(model, tok, records, stage1: GenerativeConfig, through_bottleneck: bool) -> dict[str, float]:
    """BLEU-4 / ROUGE-L of greedy answers to held-out questions; references are cut to the same
    ``max_target`` tokens the generative stage trained on."""
    refs = [tok.decode(token_ids(tok, r.answer)[:stage1.max_target]) for r in records]
    hyps = greedy_generate(model, tok, [r.question for r in records], max_new_tokens=stage1.max_target,
                           max_input=stage1.max_input, ratio=stage1.ratio if through_bottleneck else None)
    return generation_scores(hyps, refs)


def run_cell(profile: Profile, domain: str, seed: int, name: str, stage1: GenerativeConfig | None,
             stage2: ContrastiveConfig | None, generate: bool = False, show_progress: bool = False) -> dict[str, list]:
    """One model of the study: the base LLM, optionally a stage-1 run, optionally a stage-2 run, then
    retrieval on the isolated eval set (plus generation and the separation ratio when asked).

    The result is cached by everything it depends on, so an experiment that needs a model another
    one already scored (the ratio sweep's r = 8 is the stage ablation's IB-GL) reads it back."""
    key = cache_key(profile=profile.to_dict(), domain=domain, seed=seed,
                    stage1=stage1.__dict__ if stage1 else None, stage2=stage2.to_dict() if stage2 else None,
                    generate=generate)
    return cached_json("lbr_cells", key, lambda: _compute_cell(profile, domain, seed, stage1, stage2, generate,
                                                                show_progress)) | {"name": name}


def trained_embedder(profile: Profile, domain: str, seed: int, stage1: GenerativeConfig | None,
                     stage2: ContrastiveConfig | None, show_progress: bool = False,
                     splits: DomainSplits | None = None) -> tuple[LLMEmbedder, list[dict]]:
    """The base LLM, after stage 1 and/or stage 2 as given, as an embedder (the bottleneck embedding
    unless ``stage2`` names another pooling); plus a row per training stage (time, steps, final loss).
    ``splits`` saves reloading the domain when the caller has it already."""
    splits = splits or load_domain(domain, profile, seed)
    ratio = stage1.ratio if stage1 is not None and stage1.bottleneck else RATIO
    training = []
    if stage1 is None:
        model, tok = load_causal_lm(profile.model)
    else:
        model, tok, info = stage1_model(profile.model, domain, splits.gl, stage1, show_progress=show_progress)
        training.append({"stage": 1, "seconds": info["wall_time_s"], "steps": len(info["losses"]),
                         "final_loss": float(np.mean(info["losses"][-5:]))})
    add_bottleneck_tokens(model, tok, configs(profile, seed, ratio)[0].max_bottleneck)  # a no-op after IB-GL
    if stage2 is not None:
        embedder, result = train_contrastive(model, tok, splits.cl, stage2, show_progress=show_progress)
        training.append({"stage": 2, "seconds": result.wall_time_s, "steps": len(result.losses),
                         "final_loss": float(np.mean(result.losses[-5:]))})
    else:
        embedder = LLMEmbedder(model, tok, pooling=bottleneck_pooling(ratio))
    embedder.bf16, embedder.max_length = True, max_length(profile)
    return embedder, training


def _compute_cell(profile, domain, seed, stage1, stage2, generate, show_progress) -> dict[str, list]:
    splits = load_domain(domain, profile, seed)
    embedder, training = trained_embedder(profile, domain, seed, stage1, stage2, show_progress, splits)
    out = {"retrieval": evaluate_models({"model": embedder}, {domain: splits.eval}).to_dict(orient="records"),
           "training": training}
    if stage2 is None:
        q = embedder.embed([splits.eval.queries[i] for i in splits.eval.qrels])
        d = embedder.embed([splits.eval.corpus[next(iter(rel))] for rel in splits.eval.qrels.values()])
        out["separation"] = [{"separation_ratio": separation_ratio(q, d)}]
    if generate:
        through = stage1 is not None and stage1.bottleneck and stage2 is None
        out["generation"] = [_generation(embedder.model, embedder.tokenizer, splits.eval_records[:profile.n_generate],
                                         stage1 or configs(profile, seed)[0], through_bottleneck=through)]
    return out


def collect(cells: list[dict], **labels) -> dict[str, list]:
    """Flatten cell results into tables, each row labelled with its model name and ``labels``."""
    out: dict[str, list] = {}
    for cell in cells:
        for table, rows in cell.items():
            if table != "name":
                out.setdefault(table, []).extend(dict(row, model=cell["name"], **labels) for row in rows)
    return out


def run_one(profile: Profile, domain: str, seed: int, show_progress: bool = False) -> dict[str, list]:
    """Table 3's six models (three starting points, with and without stage 2) for one (domain, seed),
    with generation scored for Table 2's four."""
    stage1, stage2 = configs(profile, seed)
    gl = replace(stage1, bottleneck=False)
    cells = [run_cell(profile, domain, seed, name, s1, s2, generate=name in TABLE2, show_progress=show_progress)
             for name, s1, s2 in [("LLM", None, None), ("LLM+GL", gl, None), ("LLM+IB-GL", stage1, None),
                                  ("LLM+CL", None, stage2), ("LLM+GL+CL", gl, stage2),
                                  ("LLM+IB-GL+CL", stage1, stage2)]]
    return collect(cells, domain=domain, seed=seed)


def run_lbr_study(profile_name: str, domains: tuple[str, ...] = tuple(DOMAINS), seeds: tuple[int, ...] | None = None,
                  show_progress: bool = True) -> dict[str, pd.DataFrame]:
    profile = lbr_profile(get_profile(profile_name))
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    out: dict[str, list] = {}
    with timer() as t:
        runs = [(d, s) for d in domains for s in seeds]
        for domain, seed in tqdm(runs, desc="domain x seed", disable=not show_progress):
            for key, rows in run_one(profile, domain, seed).items():
                out.setdefault(key, []).extend(rows)
    stage1, stage2 = configs(profile, seeds[0])
    config = {"profile": profile.to_dict(), "domains": list(domains), "stage1": stage1.__dict__,
              "stage2": stage2.to_dict(), "n_generate": profile.n_generate,
              "embedding": f"last bottleneck token, r={RATIO:g}, causal attention"}
    save_results(EXPERIMENT, profile_name, out, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in out.items()}
