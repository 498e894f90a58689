import pytest

from lbr_utils.batching import IndexBatcher, PairBatcher
from lbr_utils.contrastive import ContrastiveConfig, mine_hard_negatives, train_contrastive
from lbr_utils.data import QARecord
from lbr_utils.models import load_causal_lm
from lbr_utils.train import TrainConfig


def _run(records, steps=4, **kw):
    model, tok = load_causal_lm("tiny")
    cfg = ContrastiveConfig(steps=steps, batch_size=8, lora_rank=4, max_length=32, **kw)
    return train_contrastive(model, tok, records, cfg, show_progress=False, checkpoint_dir=kw.pop("ckpt", None))


def test_same_seed_gives_identical_losses(cl_records):
    a, b = _run(cl_records)[1], _run(cl_records)[1]
    assert a.losses == b.losses and len(a.losses) == 4
    c = _run(cl_records, seed=1)[1]
    assert c.losses != a.losses


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


def test_hard_negatives_skip_false_negatives():
    recs = [QARecord("1", "m", "asthma nos", "Unspecified asthma", "J45"),
            QARecord("2", "m", "asthmatic bronchitis", "Unspecified asthma", "J45"),
            QARecord("3", "m", "chronic asthma", "Chronic obstructive asthma", "J44"),
            QARecord("4", "m", "broken arm", "Fracture of humerus", "S42")]
    filtered = mine_hard_negatives(recs, k=1)
    assert all(recs[n].entity != recs[i].entity for i, negs in enumerate(filtered) for n in negs)
    assert filtered[0] == [2]  # "chronic asthma" is the hardest negative that is not the same condition
    assert mine_hard_negatives(recs, k=1, filter_false_negatives=False)[0] == [1]  # its own twin
