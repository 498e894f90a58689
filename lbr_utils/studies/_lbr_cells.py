"""One scored model of the LBR chapters (a *cell*), trained once and read back from the run cache.

A cell is the base LLM, optionally a stage-1 run, optionally a stage-2 run, then retrieval on the
isolated evaluation set (plus generation and the separation ratio when asked). Chapters 5a and 5b
and their reruns share cells: Table 4's causal column *is* Table 3's GL+CL row, so it is trained once.
The cache key holds everything a cell depends on, the code included (:mod:`lbr_utils.runcache`), so
a chapter split into parts (one domain per run) or interrupted resumes from its finished cells.

Every retrieval row stores each evaluation query's NDCG@10 (``per_query``, in the evaluation set's
query order), so two models of one (domain, seed) can be compared query by query
(:func:`lbr_utils.stats.judge`).
"""

from __future__ import annotations

from dataclasses import replace

from ..data import DomainSplits, load_domain
from ..embedders import SentenceTransformerEmbedder
from ..evaluate import BM25, evaluate_models, ranked_ndcg
from ..generate import generation_scores, greedy_generate
from ..geometry import separation_ratio
from ..contrastive import train_encoder
from ..lbr import ContrastiveConfig, GenerativeConfig, configs, max_length, trained_embedder
from ..pooling import token_ids
from ..profiles import Profile
from ..results import paper_numbers
from ..runcache import cache_key, cached_json, code_fingerprint

BASELINES = ("BM25", "MiniLM", "MiniLM+CL")  # what a practitioner would pick instead of an LLM embedder


def _generation(model, tok, records, stage1: GenerativeConfig, through_bottleneck: bool) -> dict:
    """BLEU-4 / ROUGE-L of greedy answers to held-out questions (corpus scores and per question);
    references are cut to the same ``max_target`` tokens the generative stage trained on."""
    refs = [tok.decode(token_ids(tok, r.answer)[:stage1.max_target]) for r in records]
    hyps = greedy_generate(model, tok, [r.question for r in records], max_new_tokens=stage1.max_target,
                           max_input=stage1.max_input, ratio=stage1.ratio if through_bottleneck else None,
                           bottleneck_length=stage1.max_bottleneck if stage1.fixed_bottleneck else None)
    return generation_scores(hyps, refs, per_question=True) | {"examples": list(zip(hyps[:3], refs[:3]))}


def _retrieval_row(embed, splits: DomainSplits, stage1_steps: int, stage2_steps: int) -> dict:
    """NDCG@10 on the evaluation set, overall and per query (in the set's query order)."""
    per_query = ranked_ndcg(embed, splits.eval)
    scores = [per_query[q] for q in splits.eval.qrels]
    return {"metric": "NDCG@10", "score": sum(scores) / len(scores), "per_query": scores,
            "stage1_steps": stage1_steps, "stage2_steps": stage2_steps, "steps": stage1_steps + stage2_steps}


def _compute_cell(profile, domain, seed, stage1, stage2, generate, snapshots, cl_data, readout,
                  show_progress) -> dict[str, list]:
    splits = load_domain(domain, profile, seed)
    if cl_data == "gl+cl":  # contrastive learning on every labelled pair LBR's two stages see
        splits = replace(splits, cl=splits.gl + splits.cl)
    s1 = stage1.steps if stage1 else 0
    retrieval = []
    at_steps = {step: (lambda emb, step=step: retrieval.append(_retrieval_row(emb.embed, splits, s1, step)))
                for step in snapshots}
    embedder, training = trained_embedder(profile, domain, seed, stage1, stage2, show_progress, splits, at_steps)
    if readout:
        embedder = embedder.replace(pooling=readout)
    retrieval.append(_retrieval_row(embedder.embed, splits, s1, stage2.steps if stage2 else 0))
    out = {"retrieval": retrieval, "training": training}
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
             stage2: ContrastiveConfig | None, generate: bool = False, snapshots: tuple[int, ...] = (),
             cl_data: str = "cl", readout: str | None = None, show_progress: bool = False) -> dict[str, list]:
    """One model of the study, scored, as ``{table: rows}`` plus its ``name``; computed once per key.

    ``snapshots`` are stage-2 steps (below ``stage2.steps``) at which the evaluation set is scored as
    well: one retrieval row each, so a long run also gives the shorter budgets' models.
    ``cl_data="gl+cl"`` trains stage 2 on the GL and CL splits together; ``readout`` reads the final
    model with another pooling (e.g. ``"last"`` for a model whose bottleneck rows never trained)."""
    if cl_data not in ("cl", "gl+cl"):
        raise ValueError(f"cl_data must be 'cl' or 'gl+cl', got {cl_data!r}")
    key = cache_key(code_fingerprint(__name__), profile=profile.to_dict(), domain=domain, seed=seed,
                    stage1=stage1.__dict__ if stage1 else None, stage2=stage2.to_dict() if stage2 else None,
                    generate=generate, snapshots=list(snapshots), cl_data=cl_data, readout=readout)
    return cached_json("lbr_cells", key, lambda: _compute_cell(profile, domain, seed, stage1, stage2, generate,
                                                                snapshots, cl_data, readout, show_progress)) | {"name": name}


def _compute_baseline(profile: Profile, domain: str, seed: int, kind: str, cfg: ContrastiveConfig) -> dict[str, list]:
    """BM25, MiniLM as is, or MiniLM fine-tuned with ``cfg`` (its ``max_length`` applies to both MiniLMs)."""
    splits = load_domain(domain, profile, seed)
    if kind == "BM25":
        [row] = evaluate_models({kind: BM25}, {domain: splits.eval}, per_query=True).query("metric == 'NDCG@10'") \
            .to_dict(orient="records")
        scores = [row["per_query"][q] for q in splits.eval.qrels]
        return {"retrieval": [{"metric": "NDCG@10", "score": sum(scores) / len(scores), "per_query": scores,
                               "stage1_steps": 0, "stage2_steps": 0, "steps": 0}]}
    if kind == "MiniLM":
        return {"retrieval": [_retrieval_row(SentenceTransformerEmbedder(max_length=cfg.max_length).embed,
                                             splits, 0, 0)]}
    embedder, result = train_encoder(splits.cl, cfg, show_progress=False, dev=splits.dev)
    return {"retrieval": [_retrieval_row(embedder.embed, splits, 0, cfg.steps)],
            "training": [{"stage": 2, **result.summary()}]}


def encoder_config(profile: Profile, seed: int, steps: int, length: int | None = None) -> ContrastiveConfig:
    """all-MiniLM-L6-v2 fine-tuned on the CL pairs: the LLM runs' batch, temperature (MNRL's scale 20)
    and dev curve; full fine-tuning at a learning rate for a small encoder, with sentence-transformers'
    usual schedule (warmup, then decay: the model is scored only at its end); texts cut to ``length``
    word pieces (default: as many as the LLM runs read, in its own tokens)."""
    _, stage2 = configs(profile, seed)
    return ContrastiveConfig(steps=steps, batch_size=stage2.batch_size, lr=5e-5, temperature=stage2.temperature,
                             lora_rank=0, max_length=length or max_length(profile), seed=seed,
                             eval_every=stage2.eval_every)


def run_baseline(profile: Profile, domain: str, seed: int, kind: str, steps: int = 0,
                 length: int | None = None) -> dict[str, list]:
    """A practitioner's baseline on the evaluation set: ``"BM25"``, ``"MiniLM"`` as is, or ``"MiniLM+CL"``
    (fine-tuned for ``steps`` on the same contrastive pairs with the same loss); MiniLM reads ``length``
    word pieces (default: the LLM runs' length). Cached like a cell."""
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
    cfg = encoder_config(profile, seed, max(1, steps), length)
    key = cache_key(code_fingerprint(__name__), profile=profile.to_dict(), domain=domain, seed=seed, kind=kind,
                    cfg=cfg.to_dict() if kind == "MiniLM+CL" else None,
                    length=cfg.max_length if kind == "MiniLM" else None)
    name = kind if length is None else f"{kind} ({length} tokens)"
    return cached_json("lbr_cells", key, lambda: _compute_baseline(profile, domain, seed, kind, cfg)) | {"name": name}


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
