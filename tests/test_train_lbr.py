"""``lbr_utils.cli.train_lbr`` under ``accelerate launch`` with two CPU processes (gloo): both stages
train and the command exports one embedder."""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


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
