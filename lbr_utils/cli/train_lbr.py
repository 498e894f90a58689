"""Learn Before Represent end to end, as one command: stage 1 (IB-GL), stage 2 (contrastive), export.

    python -m lbr_utils.cli.train_lbr --profile cpu --domain medical --out runs/lbr-medical
    accelerate launch --multi_gpu --num_processes 4 -m lbr_utils.cli.train_lbr --profile gpu --domain medical \\
        --out runs/lbr-medical

The recipe and sizes are chapter 5a's (``lbr.configs`` at the profile's LBR scale). Under
``accelerate launch`` every process trains on its own batches and the training loop averages the
gradients, so the effective batch is the profile's batch times the number of processes. Only the main
process writes ``out``, which ``lbr_utils.load_embedder(out)`` reads back. Unlike the chapters nothing
is cached: a launch is one run, start to finish.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..contrastive import train_contrastive
from ..data import DOMAINS, load_domain
from ..export import save_embedder
from ..lbr import configs, max_length, train_generative
from ..models import load_causal_lm
from ..profiles import PROFILE_NAMES, get_profile, lbr_profile


def train_lbr(profile_name: str, domain: str, out: str | Path, seed: int = 0, model: str | None = None,
              evaluate: bool = True, show_progress: bool = True) -> dict:
    """Train LBR on ``domain`` at the profile's scale, save the embedder to ``out`` and return a
    summary (losses, wall times, processes, and NDCG@10 on the isolated evaluation set if asked)."""
    from accelerate import PartialState

    overrides = {"model": model} if model else {}
    profile = lbr_profile(get_profile(profile_name, **overrides))
    splits = load_domain(domain, profile, seed)
    stage1, stage2 = configs(profile, seed)
    lm, tok = load_causal_lm(profile.model)
    s1 = train_generative(lm, tok, splits.gl, stage1, show_progress=show_progress)
    embedder, s2 = train_contrastive(lm, tok, splits.cl, stage2, show_progress=show_progress)
    embedder = embedder.replace(max_length=max_length(profile))
    state = PartialState()
    summary = {"profile": profile.name, "model": profile.model, "domain": domain, "seed": seed,
               "processes": state.num_processes, "stage1": s1.to_dict(), "stage2": s2.to_dict()}
    if state.is_main_process:
        if evaluate:
            from ..evaluate import evaluate_models

            scores = evaluate_models({"LBR": embedder}, {domain: splits.eval})
            summary["NDCG@10"] = float(scores[scores.metric == "NDCG@10"].score.iloc[0])
        save_embedder(embedder, out)
        (Path(out) / "training.json").write_text(json.dumps(summary, indent=2))
    state.wait_for_everyone()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lbr_utils.cli.train_lbr", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILE_NAMES, default="cpu")
    parser.add_argument("--domain", choices=tuple(DOMAINS), default="medical")
    parser.add_argument("--out", required=True, help="folder for the trained embedder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="hub id or local path instead of the profile's model")
    parser.add_argument("--no-eval", action="store_true", help="skip NDCG@10 on the evaluation set")
    args = parser.parse_args(argv)
    summary = train_lbr(args.profile, args.domain, args.out, args.seed, args.model, evaluate=not args.no_eval)
    if "NDCG@10" in summary:
        print(f"NDCG@10 on {args.domain}'s evaluation set: {summary['NDCG@10']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
