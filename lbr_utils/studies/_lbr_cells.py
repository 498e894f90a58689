"""One scored model of the LBR chapters (a *cell*), trained once and read back from the run cache.

A cell is the base LLM, optionally a stage-1 run, optionally a stage-2 run, then retrieval on the
isolated evaluation set (plus generation and the separation ratio when asked). Chapters 5a and 5b
and their reruns share cells: Table 4's causal column *is* Table 3's GL+CL row, so it is trained once.
The cache key holds everything a cell depends on, the code included (:mod:`lbr_utils.runcache`).
"""

from __future__ import annotations

from ..data import load_domain
from ..evaluate import evaluate_models
from ..generate import generation_scores, greedy_generate
from ..geometry import separation_ratio
from ..lbr import ContrastiveConfig, GenerativeConfig, configs, trained_embedder
from ..pooling import token_ids
from ..profiles import Profile
from ..results import paper_numbers
from ..runcache import cache_key, cached_json, code_fingerprint


def _generation(model, tok, records, stage1: GenerativeConfig, through_bottleneck: bool) -> dict[str, float]:
    """BLEU-4 / ROUGE-L of greedy answers to held-out questions; references are cut to the same
    ``max_target`` tokens the generative stage trained on."""
    refs = [tok.decode(token_ids(tok, r.answer)[:stage1.max_target]) for r in records]
    hyps = greedy_generate(model, tok, [r.question for r in records], max_new_tokens=stage1.max_target,
                           max_input=stage1.max_input, ratio=stage1.ratio if through_bottleneck else None)
    return generation_scores(hyps, refs)


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


def run_cell(profile: Profile, domain: str, seed: int, name: str, stage1: GenerativeConfig | None,
             stage2: ContrastiveConfig | None, generate: bool = False, show_progress: bool = False) -> dict[str, list]:
    """One model of the study, scored, as ``{table: rows}`` plus its ``name``; computed once per key."""
    key = cache_key(code_fingerprint(__name__), profile=profile.to_dict(), domain=domain, seed=seed,
                    stage1=stage1.__dict__ if stage1 else None, stage2=stage2.to_dict() if stage2 else None,
                    generate=generate)
    return cached_json("lbr_cells", key, lambda: _compute_cell(profile, domain, seed, stage1, stage2, generate,
                                                                show_progress)) | {"name": name}


def collect(cells: list[dict], **labels) -> dict[str, list]:
    """Flatten cell results into tables, each row labelled with its model name and ``labels``."""
    out: dict[str, list] = {}
    for cell in cells:
        for table, rows in cell.items():
            if table != "name":
                out.setdefault(table, []).extend(dict(row, model=cell["name"], **labels) for row in rows)
    return out


def scale_line(record: dict) -> str:
    """Our scale beside the paper's, from an LBR results record's config."""
    p, config = record["config"]["profile"], record["config"]
    return (f"**Our scale:** `{p['model']}`, {p['n_gl']:,} GL / {p['n_cl']:,} CL records and {p['n_eval']:,} "
            f"evaluation queries per domain, texts cut to {p['max_length']} tokens, stage 1 {config['stage1']['steps']} "
            f"steps, stage 2 {config['stage2']['steps']} steps, batch {p['batch_size']}, seeds "
            f"{record['provenance']['seeds']}. **The paper's:** {paper_numbers()['scale']}.")
