"""LBR's stage 1 and its recipe: training, the config's checks, the pairs of each style, and the
target-token losses of a generative batch (alone, padded, mixed with plain rows)."""

import numpy as np
import pytest
import torch

from _bottleneck import PAIRS, RATIO, shifted_token_losses
from lbr_utils import lbr
from lbr_utils.data import QARecord
from lbr_utils.lbr import GenerativeConfig, build_generative_batch, target_token_losses, train_generative
from lbr_utils.masks import PAD as P
from lbr_utils.masks import TARGET as Y
from lbr_utils.models import build_tiny
from lbr_utils.pooling import bottleneck_ids
from lbr_utils.profiles import get_profile

RECORDS = [QARecord(str(i), "medical", f"question number {i} about fever", f"answer {i} is influenza", str(i))
           for i in range(8)]


@pytest.mark.parametrize("style, bottleneck", [("sft", True), ("sft", False), ("pt", True), ("pt", False)])
def test_stage1_trains_and_lowers_the_loss(style, bottleneck):
    model, tok = build_tiny()
    cfg = GenerativeConfig(style=style, bottleneck=bottleneck, ratio=4, steps=12, batch_size=4, lr=3e-3,
                           max_input=16, max_target=8)
    result = train_generative(model, tok, RECORDS, cfg, show_progress=False)
    assert np.mean(result.losses[-3:]) < np.mean(result.losses[:3])
    assert (len(bottleneck_ids(tok)) == cfg.max_bottleneck) == bottleneck


def test_generative_config_rejects_bad_input():
    with pytest.raises(ValueError, match="style"):
        GenerativeConfig(style="rlhf")
    with pytest.raises(ValueError, match="ratio"):
        GenerativeConfig(ratio=0)
    with pytest.raises(ValueError, match="at least one record"):
        train_generative(*build_tiny(), [], GenerativeConfig())


def test_pt_style_pairs():
    """PT-style IB-GL rebuilds the text from the bottleneck; standard PT is plain language modelling."""
    rec = RECORDS[:1]
    assert GenerativeConfig(style="pt", bottleneck=True).pairs(rec) == [(rec[0].answer, rec[0].answer)]
    assert GenerativeConfig(style="pt", bottleneck=False).pairs(rec) == [("", rec[0].answer)]
    assert GenerativeConfig(style="sft").pairs(rec) == [(rec[0].question, rec[0].answer)]


def test_every_text_the_study_reads_has_trained_bottleneck_tokens():
    """The longest text of stage 2 and of evaluation needs no more bottleneck tokens than stage 1 added."""
    from lbr_utils.masks import bottleneck_count

    for name in ("smoke", "cpu", "gpu"):
        profile = get_profile(name)
        stage1, stage2 = lbr.configs(profile, 0)
        assert bottleneck_count(lbr.max_length(profile) + 1, stage1.ratio) <= stage1.max_bottleneck
        assert stage2.max_length == stage1.max_input == lbr.max_length(profile)


def test_losses_from_the_labelled_positions_alone_equal_scoring_every_position(tiny_bn):
    """``target_token_losses`` sends only the positions that predict a target through the LM head; its
    losses and gradients must equal the reference computed from the full logits."""
    model, tok = tiny_bn
    batch = build_generative_batch(tok, PAIRS, 32, 16, RATIO)
    ours = target_token_losses(model, batch)
    ours.sum().backward()
    grad_ours = model.get_input_embeddings().weight.grad.clone()
    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"]).logits
    reference = shifted_token_losses(logits, batch["labels"])
    reference.sum().backward()
    grad_ref = model.get_input_embeddings().weight.grad.clone()
    model.zero_grad()
    torch.testing.assert_close(ours, reference)
    assert (ours > 0).sum() == (batch["labels"] != -100).sum()  # every target scored, nothing else
    torch.testing.assert_close(grad_ours, grad_ref)


@pytest.mark.parametrize("side", ["left", "right"])
def test_ib_gl_losses_alone_equal_losses_in_a_padded_batch(tiny_bn, side):
    model, tok = tiny_bn
    with torch.no_grad():
        batch = build_generative_batch(tok, PAIRS, 32, 16, RATIO, padding_side=side)
        together = target_token_losses(model, batch)
        for i, pair in enumerate(PAIRS):
            single = build_generative_batch(tok, [pair], 32, 16, RATIO, padding_side=side)
            alone = target_token_losses(model, single)[0]
            mine = together[i][batch["segments"][i] != P]
            torch.testing.assert_close(mine, alone, atol=1e-5, rtol=1e-4)


def test_a_plain_row_reads_the_same_inside_a_compressed_batch(tiny_bn):
    """One batch may mix compressed rows (4D mask) and plain causal rows: a plain row's losses must
    equal its losses in an all-plain batch (2D mask); a prompt row's loss sits on the answer only."""
    model, tok = tiny_bn
    examples = [("a passage about a drug", "what is it?", "aspirin"), ("another passage here", "and this?", "none")]
    with torch.no_grad():
        mixed = build_generative_batch(tok, examples, 32, 16, ratio=[RATIO, None])
        plain = build_generative_batch(tok, examples[1:], 32, 16, ratio=None)
        assert mixed["attention_mask"].dim() == 4 and plain["attention_mask"].dim() == 2
        row = target_token_losses(model, mixed)[1][mixed["segments"][1] != P]
        torch.testing.assert_close(row, target_token_losses(model, plain)[0], atol=1e-5, rtol=1e-4)
    n_answer = len(tok("aspirin", add_special_tokens=False)["input_ids"]) + 1  # + EOS
    assert int((mixed["labels"][0] != -100).sum()) == n_answer
    prompt_ids = tok("what is it?", add_special_tokens=False)["input_ids"]
    assert (mixed["segments"][0] == Y).sum() == len(prompt_ids) + n_answer  # the prompt cannot see x either


def test_pack_rows_fills_rows_up_to_the_width_and_places_every_row_once():
    from lbr_utils.lbr import pack_rows

    lengths = [30, 10, 25, 5, 60, 20]
    bins = pack_rows(lengths, 40)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 40 for b in bins if len(b) > 1)
    assert [4] in bins  # longer than the width: alone
    assert len(bins) == 4  # 60 | 30+10 | 25+5 | 20 (first fit, longest first)


@pytest.mark.parametrize("ratio", [4.0, None])
def test_a_packed_batch_is_its_examples_read_one_by_one(ratio):
    """Packing changes only the layout: the loss and every gradient equal the padded batch's, each
    example's positions restart at 0, and no token attends across an example boundary."""
    import torch

    from lbr_utils.lbr import build_generative_batch, generative_loss
    from lbr_utils.masks import PAD
    from lbr_utils.models import add_bottleneck_tokens

    model, tok = build_tiny()
    add_bottleneck_tokens(model, tok, 8)
    examples = [("fever and cough in a child", "influenza"), ("pain", "a long answer about pain in the chest"),
                ("x y z", "short"), ("question four here", "answer four")]
    padded = build_generative_batch(tok, examples, 16, 12, ratio)
    packed = build_generative_batch(tok, examples, 16, 12, ratio, pack_width=40)
    assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0]
    assert (packed["segments"] == PAD).sum() < (padded["segments"] == PAD).sum()
    grads = []
    for batch in (padded, packed):
        loss = generative_loss(model, batch)
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
        model.zero_grad()
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads[0][1], grads[1][1]))
    # Each example is a contiguous run whose positions count from 0; the mask is block-diagonal.
    starts = (packed["position_ids"] == 0) & (packed["segments"] != PAD)
    assert int(starts.sum()) == len(examples)
    allowed = packed["attention_mask"][:, 0] == 0
    example = starts.cumsum(1)
    cross = allowed & (example.unsqueeze(2) != example.unsqueeze(1)) & (packed["segments"] != PAD).unsqueeze(2)
    assert not cross.any()


def test_packing_needs_right_padding():
    from lbr_utils.lbr import build_generative_batch

    _, tok = build_tiny()
    with pytest.raises(ValueError, match="right padding"):
        build_generative_batch(tok, [("a", "b")], 8, 8, None, padding_side="left", pack_width=20)


def test_the_first_token_of_an_example_is_never_a_label():
    """Standard PT has no x: with a tokenizer that adds no BOS an example starts with a target token,
    which nothing precedes. It is not scored, padded or packed, so packing cannot predict it from the
    previous example's EOS."""
    from lbr_utils.lbr import build_generative_batch, generative_loss

    model, tok = build_tiny()
    examples = [("", "the first text to learn"), ("", "a second one"), ("", "third")]
    padded = build_generative_batch(tok, examples, 16, 12, None)
    packed = build_generative_batch(tok, examples, 16, 12, None, pack_width=64)
    starts = (packed["position_ids"] == 0) & (packed["segments"] != 0)
    assert (packed["labels"][starts] == -100).all() and (padded["labels"][:, 0] == -100).all()
    assert generative_loss(model, padded).item() == pytest.approx(generative_loss(model, packed).item(), abs=1e-5)


def test_every_bottleneck_token_read_at_evaluation_was_trained_in_stage_1():
    """Coverage, not existence: at the LBR scale, the bottleneck ids that evaluation reads (the last one
    of every corpus text and query) all occur in stage-1 training batches; and the ratio sweep of
    Table 5 changes k."""
    from lbr_utils.batching import PairBatcher
    from lbr_utils.data import load_domain
    from lbr_utils.lbr import build_generative_batch, configs
    from lbr_utils.models import add_bottleneck_tokens, load_causal_lm
    from lbr_utils.pooling import bottleneck_ids, build_inputs
    from lbr_utils.profiles import lbr_profile

    profile = lbr_profile(get_profile("cpu"))
    splits = load_domain("medical", profile)
    stage1, stage2 = configs(profile, 0)
    model, tok = load_causal_lm("smollm2-135m")
    add_bottleneck_tokens(model, tok, stage1.max_bottleneck)
    bn = set(bottleneck_ids(tok))
    pairs, batcher = stage1.pairs(splits.gl), PairBatcher(splits.gl, stage1.batch_size)
    trained = set()
    for step in range(5):
        batch = build_generative_batch(tok, [pairs[i] for i in batcher.indices(step)], stage1.max_input,
                                       stage1.max_target, stage1.ratio, pack_width=stage1.pack_width,
                                       bottleneck_length=stage1.max_bottleneck)
        trained |= set(batch["input_ids"].flatten().tolist()) & bn
    texts = list(splits.eval.corpus.values()) + list(splits.eval.queries.values())
    read = build_inputs(tok, texts, stage2.pooling, stage2.max_length)
    last = {int(ids[pool.bool()][-1]) for ids, pool in zip(read["input_ids"], read["pool_mask"])}
    assert last <= trained and len(last) == 1
    ks = {r: configs(profile, 0, r)[1].pooling.k for r in (2.0, 4.0, 8.0, 16.0, 32.0)}
    assert len(set(ks.values())) == 5 and all(ks[r] == configs(profile, 0, r)[0].max_bottleneck for r in ks)
