from dataclasses import replace

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


def test_stage_2_trains_the_bottleneck_rows_it_reads():
    """With LoRA, the embedding rows of the bottleneck tokens train (a readout training can shape);
    every other row stays frozen."""
    import torch

    from lbr_utils.models import add_bottleneck_tokens, build_tiny
    from lbr_utils.pooling import bottleneck_ids, bottleneck_pooling

    model, tok = build_tiny()
    add_bottleneck_tokens(model, tok, 6)
    before = model.get_input_embeddings().weight.detach().clone()
    records = [QARecord(str(i), "d", f"question {i} about fever", f"answer {i} is influenza", str(i)) for i in range(8)]
    cfg = ContrastiveConfig(steps=3, batch_size=4, lr=1e-2, lora_rank=4, max_length=16,
                            pooling=bottleneck_pooling(4.0, max_length=16))
    embedder, _ = train_contrastive(model, tok, records, cfg, show_progress=False)
    with torch.no_grad():  # the embedding module as the trained model applies it (peft adds the row deltas)
        merged = embedder.model.get_base_model().get_input_embeddings()(torch.arange(len(before)))
    bn = bottleneck_ids(tok)
    changed = (merged.detach() - before).abs().sum(1) > 0
    read = bn[:cfg.pooling.k]  # k = 5 of the 6 added tokens follow every text; the sixth is never read
    assert changed[read].all() and not changed[[i for i in range(len(before)) if i not in read]].any()


def test_a_dev_curve_is_scored_during_contrastive_training():
    from lbr_utils.data import load_domain
    from lbr_utils.models import build_tiny
    from lbr_utils.profiles import get_profile

    splits = load_domain("medical", get_profile("smoke"))
    model, tok = build_tiny()
    cfg = ContrastiveConfig(steps=4, batch_size=4, lora_rank=4, max_length=16, eval_every=2)
    embedder, result = train_contrastive(model, tok, splits.cl, cfg, show_progress=False, dev=splits.dev)
    assert [p["step"] for p in result.curve] == [2, 4]
    assert all(0.0 <= p["dev NDCG@10"] <= 1.0 for p in result.curve)
    last = result.curve[-1]["dev NDCG@10"]
    from lbr_utils.evaluate import ranked_ndcg

    again = ranked_ndcg(embedder.replace(bf16=True).embed, splits.dev)
    assert sum(again.values()) / len(again) == pytest.approx(last, abs=1e-6)  # the curve ends at the returned model


def test_a_snapshot_of_a_longer_run_is_the_shorter_run():
    """``at_steps`` hands over the embedder as it is after step n: with a flat learning rate that is the
    model an n-step run returns (the evaluation set scored at two budgets from one run)."""
    import numpy as np

    from lbr_utils.models import build_tiny

    records = [QARecord(str(i), "d", f"question {i} about fever", f"answer {i} is influenza", str(i)) for i in range(8)]
    texts = ["question 1 about fever", "answer 3 is influenza"]
    cfg = ContrastiveConfig(steps=3, batch_size=4, lr=1e-2, lora_rank=4, max_length=16, schedule="constant",
                            warmup_steps=1)
    short, _ = train_contrastive(*build_tiny(), records, cfg, show_progress=False)
    seen = {}
    model, tok = build_tiny()
    train_contrastive(model, tok, records, replace(cfg, steps=6), show_progress=False,
                      at_steps={3: lambda emb: seen.update(vectors=emb.embed(texts))})
    assert np.allclose(seen["vectors"], short.replace(bf16=True).embed(texts), atol=1e-5)
    with pytest.raises(ValueError, match="at_steps"):
        train_contrastive(*build_tiny(), records, cfg, show_progress=False, at_steps={4: print})


def test_the_encoder_baseline_trains_with_the_same_loss_as_mnrl():
    """all-MiniLM-L6-v2 fine-tuned on the pairs: our InfoNCE on its embeddings is sentence-transformers'
    MultipleNegativesRankingLoss (scale 1 / temperature), and a few steps lower the loss."""
    import torch
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    from lbr_utils.contrastive import train_encoder
    from lbr_utils.data import load_domain
    from lbr_utils.embedders import SentenceTransformerEmbedder
    from lbr_utils.losses import info_nce
    from lbr_utils.profiles import get_profile

    splits = load_domain("medical", get_profile("smoke"))
    st = SentenceTransformerEmbedder(max_length=32).model
    queries, positives = [r.question for r in splits.cl[:6]], [r.answer for r in splits.cl[:6]]
    features = [st.tokenize(t) for t in (queries, positives)]
    with torch.no_grad():
        ours = info_nce(st(dict(features[0]))["sentence_embedding"], st(dict(features[1]))["sentence_embedding"],
                        temperature=0.05)
        reference = MultipleNegativesRankingLoss(st, scale=20.0)([dict(f) for f in features], None)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    # One batch of 8 pairs seen every step, at a temperature where the loss has room to fall.
    cfg = ContrastiveConfig(steps=6, batch_size=8, lr=1e-4, max_length=32, temperature=1.0)
    embedder, result = train_encoder(splits.cl[:8], cfg, show_progress=False)
    assert result.losses[-1] < result.losses[0]
    assert embedder.embed(queries[:2]).shape == (2, 384)
