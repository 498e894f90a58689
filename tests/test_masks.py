"""The information-bottleneck mask: what it allows, that nothing of x leaks into y, padding, NaNs."""

import pytest
import torch

from lbr_utils.generate import decode_greedy, generation_scores, greedy_generate, prefill, stack_caches
from lbr_utils.lbr import build_generative_batch, generative_loss, target_token_losses
from lbr_utils.masks import BOTTLENECK as B
from lbr_utils.masks import INPUT as X
from lbr_utils.masks import PAD as P
from lbr_utils.masks import TARGET as Y
from lbr_utils.masks import allowed_attention, bottleneck_count, ib_attention_mask
from lbr_utils.models import add_bottleneck_tokens, build_tiny

PAIRS = [("the patient has a fever and a cough", "influenza"),
         ("a longer question about a drug with several words in it", "an answer of a few words"),
         ("short", "yes")]
RATIO = 2.0


def _tiny_with_bottleneck(num_layers: int = 2):
    model, tok = build_tiny(num_layers=num_layers)
    add_bottleneck_tokens(model, tok, 16)
    return model, tok


@pytest.fixture(scope="module")
def tiny_bn():
    return _tiny_with_bottleneck()


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


def shifted_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference: cross-entropy of ``labels[:, t]`` under ``logits[:, t - 1]`` from the logits of
    every position, (batch, seq), zero where labels are -100."""
    labels = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels.clamp(min=0),
                                               reduction="none")
    return torch.nn.functional.pad(losses * (labels != -100), (1, 0))


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


def test_decoding_from_the_pruned_cache_equals_the_masked_forward(tiny_bn):
    """Generation through the bottleneck keeps only B in the KV cache; the logits must be those of
    training's masked forward pass, position by position (teacher forcing)."""
    model, tok = tiny_bn
    x, y = PAIRS[1]
    batch = build_generative_batch(tok, [(x, y)], 32, 16, RATIO)
    seg = batch["segments"][0]
    with torch.no_grad():
        masked = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits[0]
        logits, cache, position = prefill(model, tok, x, 32, RATIO)
        assert cache.get_seq_length() == int((seg == B).sum())  # x is gone from the cache
        steps = [logits[0]]
        for token in batch["input_ids"][0, seg == Y][:-1].tolist():
            out = model(input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True,
                        position_ids=torch.tensor([[position]]))
            steps.append(out.logits[0, -1])
            cache, position = out.past_key_values, position + 1
    predicting_targets = torch.nonzero(seg == Y).squeeze(1) - 1  # position t - 1 predicts target t
    torch.testing.assert_close(torch.stack(steps), masked[predicting_targets], atol=1e-4, rtol=1e-4)


def test_greedy_generation_and_its_scores(tiny_bn):
    model, tok = tiny_bn
    out = greedy_generate(model, tok, ["alpha", "beta gamma"], max_new_tokens=4, ratio=RATIO)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    with pytest.raises(ValueError, match="no prompts"):
        greedy_generate(model, tok, [])
    perfect = generation_scores(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert perfect["BLEU-4"] == pytest.approx(100) and perfect["ROUGE-L"] == pytest.approx(100)
    # ROUGE-L by hand: LCS("the cat sat", "the dog sat") = 2 tokens; P = R = 2/3 -> F1 = 2/3.
    assert generation_scores(["the cat sat"], ["the dog sat"])["ROUGE-L"] == pytest.approx(200 / 3)


@pytest.mark.parametrize("ratio, suffixes", [(None, None), (RATIO, None), (RATIO, [" q one", " a longer question"])])
def test_batched_decoding_equals_decoding_each_prompt_alone(tiny_bn, ratio, suffixes):
    """Prompts of different lengths, stacked into one left-padded cache: every row gets, at every
    step, the logits it gets decoded alone (plain, through the bottleneck, with a question after it)."""
    model, tok = tiny_bn
    prompts = ["alpha", "beta gamma delta epsilon zeta"]
    suffixes = suffixes or ["", ""]

    def step_logits(batch: list[tuple]) -> torch.Tensor:
        logits, caches, positions = zip(*batch)
        cache, mask = stack_caches(list(caches))
        steps = []
        hook = model.get_output_embeddings().register_forward_hook(lambda m, i, o: steps.append(o[:, -1]))
        decode_greedy(model, torch.cat(logits), cache, torch.tensor(positions), 5, attention_mask=mask)
        hook.remove()
        return torch.stack(steps, 1)

    def prefills():
        return [prefill(model, tok, p, 32, ratio, s) for p, s in zip(prompts, suffixes)]

    alone = torch.cat([step_logits([row]) for row in prefills()])
    torch.testing.assert_close(step_logits(prefills()), alone, atol=1e-4, rtol=1e-4)
    assert greedy_generate(model, tok, prompts, 5, 32, ratio, suffixes, batch_size=2) == \
        greedy_generate(model, tok, prompts, 5, 32, ratio, suffixes, batch_size=1)


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


def test_decoding_a_question_after_the_bottleneck_equals_the_masked_forward(tiny_bn):
    model, tok = tiny_bn
    x, q, y = "a passage about a drug and its uses", " which drug?", " aspirin"
    batch = build_generative_batch(tok, [(x, q, y)], 32, 16, RATIO)
    seg, labels = batch["segments"][0], batch["labels"][0]
    with torch.no_grad():
        masked = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits[0]
        logits, cache, position = prefill(model, tok, x, 32, RATIO, suffix=q)
    first_answer = int(torch.nonzero(labels != -100)[0])
    assert position == first_answer and cache.get_seq_length() == int((seg != X).sum()) - (len(seg) - first_answer)
    torch.testing.assert_close(logits[0], masked[first_answer - 1], atol=1e-4, rtol=1e-4)
