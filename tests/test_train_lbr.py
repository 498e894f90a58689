"""``lbr_utils.cli.train_lbr`` and the training loop it relies on under ``accelerate launch`` with two
CPU processes (gloo): it trains, the processes stay in sync, the one checkpoint it saves reloads in a
single process, and the command exports one embedder."""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_two_process_stage1_trains_and_its_checkpoint_reloads(tmp_path):
    accelerate = Path(sys.executable).with_name("accelerate")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(HERE / "_distributed_stage1.py"), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    losses = ranks[0]["losses"]
    assert sum(losses[-3:]) < sum(losses[:3])  # it trains
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients were averaged: one model, two processes
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["step-12"]

    sys.path.insert(0, str(HERE))
    try:
        from _distributed_stage1 import run
    finally:
        sys.path.remove(str(HERE))
    reloaded = run(str(tmp_path))  # one process, same checkpoint dir: resumes at the end, trains no more
    assert reloaded["resumed_from"] == 12 and reloaded["weights"] == ranks[0]["weights"]


def test_the_lbr_command_trains_on_two_processes_and_exports_one_embedder(tmp_path):
    """``accelerate launch -m lbr_utils.cli.train_lbr``, the command the GPU page gives, on the tiny model:
    both stages run on two processes and the main process's folder loads back as an embedder."""
    import math

    from lbr_utils import load_embedder

    accelerate = Path(sys.executable).with_name("accelerate")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    out = tmp_path / "lbr"
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "lbr_utils.cli.train_lbr",
           "--profile", "smoke", "--domain", "medical", "--model", "tiny", "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "training.json").read_text())
    assert summary["processes"] == 2 and summary["model"] == "tiny"
    assert summary["stage1"]["losses"] and summary["stage2"]["losses"]
    assert all(math.isfinite(x) for x in summary["stage1"]["losses"] + summary["stage2"]["losses"])
    assert 0.0 <= summary["NDCG@10"] <= 1.0 and "NDCG@10 on medical" in done.stdout
    vectors = load_embedder(out).encode(["a patient with a fever", "a rash on the arm"])
    assert vectors.shape == (2, 64)
