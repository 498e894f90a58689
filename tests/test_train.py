import pytest
import torch

from lbr_utils.batching import IndexBatcher, PairBatcher
from lbr_utils.contrastive import ContrastiveConfig, mine_hard_negatives, train_contrastive
from lbr_utils.data import QARecord, load_domain
from lbr_utils.models import load_causal_lm
from lbr_utils.profiles import get_profile
from lbr_utils.train import TrainConfig, train


@pytest.fixture(scope="module")
def cl_records():
    return load_domain("medical", get_profile("smoke")).cl


def _run(records, steps=4, **kw):
    model, tok = load_causal_lm("tiny")
    cfg = ContrastiveConfig(steps=steps, batch_size=8, lora_rank=4, max_length=32, **kw)
    return train_contrastive(model, tok, records, cfg, show_progress=False, checkpoint_dir=kw.pop("ckpt", None))


def test_same_seed_gives_identical_losses(cl_records):
    a, b = _run(cl_records)[1], _run(cl_records)[1]
    assert a.losses == b.losses and len(a.losses) == 4
    c = _run(cl_records, seed=1)[1]
    assert c.losses != a.losses


def test_training_lowers_the_loss_on_a_fixed_batch():
    model, tok = load_causal_lm("tiny")
    x = torch.randint(0, len(tok), (4, 8))
    loss_fn = lambda batch: model(input_ids=batch, labels=batch).loss  # noqa: E731
    with torch.no_grad():
        before = loss_fn(x).item()
    result = train(model, loss_fn, lambda step: x, TrainConfig(steps=15, lr=1e-2, show_progress=False, bf16=False))
    assert result.losses[-1] < before - 0.5


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


def test_bad_training_arguments_are_rejected(cl_records):
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="learning rate"):
        TrainConfig(steps=1, lr=0)
    with pytest.raises(ValueError, match="temperature"):
        _run(cl_records, temperature=0)
    with pytest.raises(ValueError, match="at least two"):
        PairBatcher(cl_records[:1], 8)
    with pytest.raises(ValueError, match="at least one example"):
        IndexBatcher(0, 8)


def test_batches_are_a_deterministic_permutation(cl_records):
    b = PairBatcher(cl_records, 8, seed=3)
    assert b(5) == b(5)
    epoch = [q for step in range(b.per_epoch) for q in b(step)["queries"]]
    assert len(set(epoch)) == len(epoch) == b.per_epoch * 8
    fresh = IndexBatcher(10, 4, seed=1)  # a resumed run rebuilds the batcher: same batch at the same step
    assert fresh.indices(7) == IndexBatcher(10, 4, seed=1).indices(7)
    epoch = [i for step in range(fresh.per_epoch) for i in fresh.indices(step)]
    assert len(set(epoch)) == len(epoch) == 8 and set(epoch) <= set(range(10))


def test_hard_negatives_skip_false_negatives():
    recs = [QARecord("1", "m", "asthma nos", "Unspecified asthma", "J45"),
            QARecord("2", "m", "asthmatic bronchitis", "Unspecified asthma", "J45"),
            QARecord("3", "m", "chronic asthma", "Chronic obstructive asthma", "J44"),
            QARecord("4", "m", "broken arm", "Fracture of humerus", "S42")]
    filtered = mine_hard_negatives(recs, k=1)
    assert all(recs[n].entity != recs[i].entity for i, negs in enumerate(filtered) for n in negs)
    assert filtered[0] == [2]  # "chronic asthma" is the hardest negative that is not the same condition
    assert mine_hard_negatives(recs, k=1, filter_false_negatives=False)[0] == [1]  # its own twin
