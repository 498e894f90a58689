"""The information-bottleneck mask: what it allows, that nothing of x leaks into y, padding, NaNs."""

import pytest
import torch

from _bottleneck import PAIRS, RATIO, _tiny_with_bottleneck, shifted_token_losses
from lbr_utils.lbr import build_generative_batch, generative_loss
from lbr_utils.masks import BOTTLENECK as B
from lbr_utils.masks import INPUT as X
from lbr_utils.masks import PAD as P
from lbr_utils.masks import TARGET as Y
from lbr_utils.masks import allowed_attention, bottleneck_count, ib_attention_mask
from lbr_utils.models import add_bottleneck_tokens


def test_mask_matches_the_rules_written_by_hand():
    segments = torch.tensor([[X, X, B, B, Y, Y, P]])
    expected = torch.tensor([
        # x0 x1 b0 b1 y0 y1 pad   (keys)
        [1, 0, 0, 0, 0, 0, 0],  # x0: causal over x
        [1, 1, 0, 0, 0, 0, 0],  # x1
        [1, 1, 1, 0, 0, 0, 0],  # b0: x and itself
        [1, 1, 1, 1, 0, 0, 0],  # b1: x and earlier B
        [0, 0, 1, 1, 1, 0, 0],  # y0: B and itself, never x
        [0, 0, 1, 1, 1, 1, 0],  # y1
        [0, 0, 0, 0, 0, 0, 1],  # pad query: itself only, so its softmax row is never empty
    ], dtype=torch.bool)
    assert torch.equal(allowed_attention(segments)[0], expected)
    cut = allowed_attention(segments, bottleneck_sees_input=False)[0]
    assert not cut[2:4, :2].any() and torch.equal(cut[4:], expected[4:])


def test_additive_mask_uses_finfo_min_not_minus_inf():
    mask = ib_attention_mask(torch.tensor([[X, B, Y, P]]), torch.bfloat16)
    assert mask.shape == (1, 1, 4, 4) and mask.dtype == torch.bfloat16
    assert torch.isfinite(mask).all() and mask.min() == torch.finfo(torch.bfloat16).min


@pytest.mark.parametrize("n, ratio, k", [(8, 8, 1), (9, 8, 2), (16, 4, 4), (3, 8, 1), (10, 0.5, 20)])
def test_k_from_the_compression_ratio(n, ratio, k):
    assert bottleneck_count(n, ratio) == k


@pytest.mark.parametrize("n, ratio, message", [(8, 0, "ratio"), (8, -2, "ratio"), (0, 8, "empty")])
def test_bad_ratio_or_empty_input_is_a_clear_error(n, ratio, message):
    with pytest.raises(ValueError, match=message):
        bottleneck_count(n, ratio)


def test_k_below_one_is_a_clear_error(tiny_bn):
    with pytest.raises(ValueError, match="at least one bottleneck token"):
        add_bottleneck_tokens(*tiny_bn, 0)


def _x_embeddings_grad(model, batch, positions_loss):
    """Gradient of a loss w.r.t. the input embeddings; returns it with the segments."""
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"]).logits
    positions_loss(logits).backward()
    return embeds.grad


def test_one_layer_target_logits_never_depend_on_x():
    model, tok = _tiny_with_bottleneck(num_layers=1)
    a = build_generative_batch(tok, [("alpha beta gamma delta", "the answer is here")], 32, 16, RATIO)
    b = build_generative_batch(tok, [("omega sigma kappa theta", "the answer is here")], 32, 16, RATIO)
    assert torch.equal(a["segments"], b["segments"]) and not torch.equal(a["input_ids"], b["input_ids"])
    target = a["segments"][0] == Y
    with torch.no_grad():
        la = model(input_ids=a["input_ids"], attention_mask=a["attention_mask"], position_ids=a["position_ids"]).logits
        lb = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], position_ids=b["position_ids"]).logits
    assert torch.equal(la[0, target], lb[0, target])
    assert not torch.allclose(la[0, ~target], lb[0, ~target])  # x itself does change
    grad = _x_embeddings_grad(model, a, lambda logits: logits[0, target].square().sum())
    assert grad[0, a["segments"][0] == X].abs().max() == 0
    assert grad[0, a["segments"][0] == B].abs().max() > 0  # the bottleneck does carry gradient


def test_without_the_mask_x_does_reach_the_target():
    """The negative control: the same check fails for plain causal attention."""
    model, tok = _tiny_with_bottleneck(num_layers=1)
    batch = build_generative_batch(tok, [("alpha beta gamma delta", "the answer is here")], 32, 16, RATIO)
    batch["attention_mask"] = (batch["segments"] != P).long()
    grad = _x_embeddings_grad(model, batch, lambda logits: logits[0, batch["segments"][0] == Y].square().sum())
    assert grad[0, batch["segments"][0] == X].abs().max() > 0


def test_with_bottleneck_cut_from_x_no_layer_count_lets_x_reach_the_loss(tiny_bn):
    model, tok = tiny_bn
    batch = build_generative_batch(tok, PAIRS, 32, 16, RATIO, bottleneck_sees_input=False)
    grad = _x_embeddings_grad(model, batch, lambda logits: shifted_token_losses(logits, batch["labels"]).sum())
    assert grad[batch["segments"] == X].abs().max() == 0


def test_attention_weights_on_x_are_exactly_zero_for_targets(tiny_bn):
    model, tok = tiny_bn
    model.set_attn_implementation("eager")
    try:
        batch = build_generative_batch(tok, PAIRS, 32, 16, RATIO)
        with torch.no_grad():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        position_ids=batch["position_ids"], output_attentions=True)
    finally:
        model.set_attn_implementation("sdpa")
    seg = batch["segments"]
    target_on_x = (seg == Y).unsqueeze(2) & (seg == X).unsqueeze(1)
    seq = seg.shape[1]
    later = torch.ones(seq, seq, dtype=torch.bool).triu(1)
    bottleneck_on_later = (seg == B).unsqueeze(2) & later
    for layer in out.attentions:  # (batch, heads, q, k)
        assert layer.permute(1, 0, 2, 3)[:, target_on_x].abs().max() == 0
        assert layer.permute(1, 0, 2, 3)[:, bottleneck_on_later].abs().max() == 0


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_no_nan_with_padded_rows(impl, dtype):
    model, tok = _tiny_with_bottleneck()
    model = model.to(dtype)
    model.set_attn_implementation(impl)
    for side in ("left", "right"):
        batch = build_generative_batch(tok, PAIRS, 32, 16, RATIO, padding_side=side, dtype=dtype)
        assert (batch["segments"] == P).any()
        loss = generative_loss(model, batch)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad()
