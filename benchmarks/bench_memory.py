"""Peak memory of training under glibc allocator settings (a benchmark, not a test).

    python benchmarks/bench_memory.py --profile cpu

Chapter 6's compressor (full fine-tuning of SmolLM2, batch 16, passages of up to 96 tokens: the
book's largest activations) trains for a few steps in a fresh process per setting; each process
reports its peak resident memory and its median step time. The suspect is glibc keeping freed
activations in per-thread arenas, so the settings bound the arenas or return memory sooner.
Writes ``results/<profile>/bench_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from lbr_utils.results import save_results

SETTINGS = {"glibc default": {}, "MALLOC_ARENA_MAX=2": {"MALLOC_ARENA_MAX": "2"},
            "MALLOC_ARENA_MAX=1": {"MALLOC_ARENA_MAX": "1"}}

CHILD = """
import json, os, resource, sys
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from lbr_utils.compress import CompressionConfig, train_compressor
from lbr_utils.models import load_causal_lm
from lbr_utils.profiles import get_profile
from lbr_utils.studies.ch06_compression import datasets
profile = get_profile(sys.argv[1])
train_set, _ = datasets(profile, 0)
model, tok = load_causal_lm(profile.model)
cfg = CompressionConfig(steps=int(sys.argv[2]), batch_size=profile.batch_size, max_target=min(64, profile.max_length))
result = train_compressor(model, tok, train_set, cfg, show_progress=False)
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds_per_step": result.wall_time_s / cfg.steps}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args()
    start = time.perf_counter()
    out = {}
    for name, env in SETTINGS.items():
        run = subprocess.run([sys.executable, "-c", CHILD, args.profile, str(args.steps)], env={**os.environ, **env},
                             capture_output=True, text=True, check=True)
        out[name] = json.loads(run.stdout.strip().splitlines()[-1])
        print(name, out[name], flush=True)
    save_results("bench_memory", args.profile, out, {"steps": args.steps, "settings": SETTINGS,
                                                     "workload": "chapter 6's compressor, full fine-tuning"},
                 seeds=[0], wall_time_s=time.perf_counter() - start)


if __name__ == "__main__":
    main()
