"""The training loop: it trains, resumes exactly, and under ``accelerate launch`` with two CPU
processes (gloo) keeps the processes in sync and saves a checkpoint that reloads in one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lbr_utils.models import load_causal_lm
from lbr_utils.train import TrainConfig, train

HERE = Path(__file__).parent


def test_training_lowers_the_loss_on_a_fixed_batch():
    model, tok = load_causal_lm("tiny")
    x = torch.randint(0, len(tok), (4, 8))
    loss_fn = lambda batch: model(input_ids=batch, labels=batch).loss  # noqa: E731
    with torch.no_grad():
        before = loss_fn(x).item()
    result = train(model, loss_fn, lambda step: x, TrainConfig(steps=15, lr=1e-2, show_progress=False, bf16=False))
    assert result.losses[-1] < before - 0.5


def test_the_fused_optimizer_takes_the_same_steps_as_the_plain_one():
    """Fused AdamW is a speed-up, not a different optimiser: same losses and weights after training."""
    def run(fused: bool):
        model, tok = load_causal_lm("tiny")
        x = torch.randint(0, len(tok), (4, 8), generator=torch.Generator().manual_seed(0))
        loss_fn = lambda batch: model(input_ids=batch, labels=batch).loss  # noqa: E731
        result = train(model, loss_fn, lambda step: x.roll(step, dims=1),
                       TrainConfig(steps=5, lr=1e-2, show_progress=False, bf16=False, fused_optimizer=fused,
                                   weight_decay=0.01))
        return result.losses, [p.detach().clone() for p in model.parameters()]

    (fused_losses, fused_weights), (plain_losses, plain_weights) = run(True), run(False)
    assert fused_losses == pytest.approx(plain_losses, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fused_weights, plain_weights))
    assert not torch.equal(fused_weights[0], load_causal_lm("tiny")[0].get_input_embeddings().weight)  # it trained


def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path):
    def run(steps, ckpt, stop_after=None):
        model, tok = load_causal_lm("tiny")
        x = torch.randint(0, len(tok), (4, 8), generator=torch.Generator().manual_seed(0))
        batches = lambda step: x.roll(step, dims=1)  # noqa: E731
        loss_fn = lambda batch: model(input_ids=batch, labels=batch).loss  # noqa: E731
        cfg = TrainConfig(steps=steps, lr=1e-3, show_progress=False, checkpoint_dir=ckpt, checkpoint_every=2, bf16=False,
                          stop_after=stop_after)
        return train(model, loss_fn, batches, cfg)

    full = run(6, None)
    run(6, str(tmp_path), stop_after=4)  # interrupted after step 4, with checkpoints at 2 and 4
    resumed = run(6, str(tmp_path))
    assert resumed.resumed_from == 4
    assert resumed.losses == pytest.approx(full.losses, rel=1e-5)


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


def test_eager_attention_in_training_gives_the_sdpa_losses():
    """The loop trains with eager attention on a CPU (faster at our lengths); the numbers are SDPA's."""
    def run(eager: bool):
        model, tok = load_causal_lm("tiny")
        x = torch.randint(0, len(tok), (4, 8), generator=torch.Generator().manual_seed(0))
        mask = torch.ones_like(x)
        mask[0, 5:] = 0  # padding: the path where the two implementations build masks differently
        def loss_fn(batch):
            assert model.config._attn_implementation == ("eager" if eager else "sdpa")  # the switch is on
            return model(input_ids=batch, attention_mask=mask, labels=batch).loss

        result = train(model, loss_fn, lambda step: x.roll(step, dims=1),
                       TrainConfig(steps=4, lr=1e-2, show_progress=False, bf16=False, eager_attention_on_cpu=eager))
        assert model.config._attn_implementation == "sdpa"  # restored after training
        return result.losses

    assert run(True) == pytest.approx(run(False), rel=1e-4)


def test_lora_training_holds_the_frozen_weights_in_bf16_and_restores_them():
    """Under bf16 autocast the loop keeps a LoRA model's frozen linear weights in bf16 while it trains
    (not when it checkpoints), and leaves the fp32 originals in place afterwards."""
    from lbr_utils.models import add_lora, decoder

    model, tok = load_causal_lm("tiny")
    lora = add_lora(model, r=4, alpha=8, dropout=0.0)
    frozen = decoder(lora).layers[0].self_attn.q_proj.base_layer.weight
    original = frozen.detach().clone()
    seen = []
    x = torch.randint(0, len(tok), (2, 6), generator=torch.Generator().manual_seed(0))

    def loss_fn(batch):
        seen.append(frozen.dtype)
        return lora(input_ids=batch, labels=batch).loss

    train(lora, loss_fn, lambda step: x, TrainConfig(steps=2, lr=1e-3, show_progress=False, bf16=True))
    assert seen == [torch.bfloat16] * 2
    assert frozen.dtype == torch.float32 and torch.equal(frozen, original)


def test_a_learning_curve_is_recorded_every_n_steps_in_eval_mode():
    model, tok = load_causal_lm("tiny")
    x = torch.randint(0, len(tok), (4, 8), generator=torch.Generator().manual_seed(0))
    loss_fn = lambda batch: model(input_ids=batch, labels=batch).loss  # noqa: E731

    def evaluate(step: int) -> dict:
        assert not model.training and not torch.is_grad_enabled()
        with torch.no_grad():
            return {"dev_loss": loss_fn(x).item()}

    result = train(model, loss_fn, lambda step: x, TrainConfig(steps=7, lr=1e-2, show_progress=False, bf16=False,
                                                               eval_every=3), evaluate=evaluate)
    assert [p["step"] for p in result.curve] == [3, 6, 7]
    assert result.curve[-1]["dev_loss"] < result.curve[0]["dev_loss"] and model.training is False
    assert 0 < result.eval_time_s < result.wall_time_s


def test_with_a_constant_schedule_the_first_steps_of_a_longer_run_are_the_shorter_run():
    """One long run scored at step n serves as the n-step run (chapter 5a's two budgets): with a flat
    learning rate after warmup the weights after step n are those an n-step run ends with. With the
    cosine schedule they are not (its rate depends on the total), which is why stage 2 uses "constant"."""
    x = torch.randint(0, 100, (4, 8), generator=torch.Generator().manual_seed(0))

    def weights_after(steps: int, schedule: str, at: int) -> dict:
        model, _ = load_causal_lm("tiny")
        seen = {}

        def evaluate(step: int) -> dict:
            seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            return {}

        result = train(model, lambda batch: model(input_ids=batch, labels=batch).loss, lambda step: x,
                       TrainConfig(steps=steps, lr=1e-2, warmup_steps=2, schedule=schedule, show_progress=False,
                                   bf16=False, eval_at=(at,)), evaluate=evaluate)
        assert result.curve == []  # an evaluate that returns nothing adds no curve point
        return seen

    short, long = weights_after(4, "constant", 4), weights_after(9, "constant", 4)
    assert all(torch.equal(short[k], long[k]) for k in short)
    cosine_short, cosine_long = weights_after(4, "cosine", 4), weights_after(9, "cosine", 4)
    assert not all(torch.equal(cosine_short[k], cosine_long[k]) for k in cosine_short)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(steps=3, schedule="linear")


def test_a_run_summary_averages_its_losses_in_windows():
    from lbr_utils.train import TrainResult

    run = TrainResult(losses=[4.0, 2.0, 3.0, 1.0, 0.0], wall_time_s=2.0, curve=[{"step": 5, "dev NDCG@10": 0.5}])
    summary = run.summary(every=2)
    assert summary["loss_curve"] == [{"step": 2, "loss": 3.0}, {"step": 4, "loss": 2.0}, {"step": 5, "loss": 0.0}]
    assert summary["final_loss"] == 2.0 and summary["steps"] == 5 and summary["dev_curve"] == run.curve
