import numpy as np
import pytest
import torch

from lbr_utils.embedders import LLMEmbedder, SentenceTransformerEmbedder
from lbr_utils.models import attention_mode
from lbr_utils.pooling import POOLINGS, build_inputs, get_pooling, mean_pool, weighted_mean_pool

TEXTS = ["short", "a somewhat longer text with more tokens in it", "medium length text"]


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_a_text_alone_equals_the_text_in_a_padded_batch(tiny, pooling, side, causal):
    model, tok = tiny
    tok.padding_side = side
    try:
        emb = LLMEmbedder(model, tok, pooling=pooling, causal=causal, batch_size=8)
        batch = emb.embed(TEXTS)
        alone = np.stack([LLMEmbedder(model, tok, pooling=pooling, causal=causal).embed([t])[0] for t in TEXTS])
    finally:
        tok.padding_side = "right"
    np.testing.assert_allclose(batch, alone, atol=1e-5)


def test_order_and_duplicates_are_preserved(tiny):
    emb = LLMEmbedder(*tiny, batch_size=2)
    out = emb.embed(TEXTS + TEXTS[::-1])
    np.testing.assert_allclose(out[:3], out[3:][::-1], atol=1e-6)
    assert out.dtype == np.float32 and out.shape == (6, tiny[0].config.hidden_size)


def test_bidirectional_attention_really_changes_the_logits(tiny):
    model, tok = tiny
    ids = tok(["one two three four"], return_tensors="pt")
    with torch.no_grad():
        causal = model(**ids).logits
        with attention_mode(model, causal=False):
            bidir = model(**ids).logits
            bidir_nomask = model(input_ids=ids["input_ids"]).logits  # SDPA path without a padding mask
        again = model(**ids).logits
    # The first token sees the rest only without the causal mask; the last token sees all in both.
    assert not torch.allclose(causal[0, 0], bidir[0, 0], atol=1e-4)
    assert torch.allclose(bidir, bidir_nomask, atol=1e-5)
    assert torch.allclose(causal, again)  # the context manager restored causal attention
    # Causal: the first position's logits do not depend on later tokens.
    with torch.no_grad():
        first_alone = model(input_ids=ids["input_ids"][:, :1]).logits
    assert torch.allclose(causal[0, 0], first_alone[0, 0], atol=1e-5)


def test_echo_pools_over_the_second_copy_only(tiny):
    _, tok = tiny
    batch = build_inputs(tok, ["alpha beta"], get_pooling("echo"), max_length=32)
    n_text = len(tok("alpha beta", add_special_tokens=False)["input_ids"])
    pool = batch["pool_mask"][0]
    assert pool.sum() == n_text and pool[-n_text:].all()  # the last n_text tokens, nothing else
    ids = batch["input_ids"][0]
    assert ids[-n_text:].tolist() == tok("alpha beta", add_special_tokens=False)["input_ids"]


def test_templates_never_push_the_text_out():
    from lbr_utils.models import load_causal_lm
    _, tok = load_causal_lm("tiny")
    long = "word " * 100
    for name in POOLINGS:
        batch = build_inputs(tok, [long], get_pooling(name), max_length=8)
        assert batch["pool_mask"].sum() >= 1 and batch["attention_mask"].sum() >= 8


def test_pooling_functions_match_a_hand_computation():
    hidden = torch.arange(12, dtype=torch.float32).reshape(1, 4, 3)
    mask = torch.tensor([[0, 1, 1, 1]])  # left padded: rows 1..3 are real
    np.testing.assert_allclose(mean_pool(hidden, mask)[0], hidden[0, 1:].mean(0))
    w = torch.tensor([1.0, 2.0, 3.0]).unsqueeze(1)
    np.testing.assert_allclose(weighted_mean_pool(hidden, mask)[0], (hidden[0, 1:] * w).sum(0) / 6)


def test_bad_input_is_rejected(tiny):
    with pytest.raises(ValueError, match="empty"):
        LLMEmbedder(*tiny).embed([])
    with pytest.raises(TypeError, match="strings"):
        LLMEmbedder(*tiny).embed([1, 2])
    with pytest.raises(ValueError, match="unknown pooling"):
        get_pooling("max")


def test_minilm_ranks_a_paraphrase_above_an_unrelated_text():
    e = SentenceTransformerEmbedder()
    a, b, c = e.embed(["aspirin relieves pain", "acetylsalicylic acid is a painkiller", "the train left at noon"])
    assert a.shape == (384,)
    cos = lambda x, y: x @ y / np.linalg.norm(x) / np.linalg.norm(y)  # noqa: E731
    assert cos(a, b) > cos(a, c) + 0.2


@pytest.mark.parametrize("side", ["left", "right"])
def test_bottleneck_embedding_alone_equals_it_in_a_padded_batch(side):
    from lbr_utils.models import add_bottleneck_tokens, build_tiny
    from lbr_utils.pooling import bottleneck_pooling

    model, tok = build_tiny()
    add_bottleneck_tokens(model, tok, 16)
    tok.padding_side = side
    pooling = bottleneck_pooling(2)
    batch = LLMEmbedder(model, tok, pooling=pooling, batch_size=8).embed(TEXTS)
    alone = np.stack([LLMEmbedder(model, tok, pooling=pooling).embed([t])[0] for t in TEXTS])
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    # The vector is the last bottleneck token's state: [x, B] with B = ceil(len(x) / 2) tokens.
    inputs = build_inputs(tok, [TEXTS[1]], pooling, max_length=64)
    n_x = len(tok(TEXTS[1], add_special_tokens=False)["input_ids"])
    assert inputs["pool_mask"][0].sum() == -(-n_x // 2) and inputs["input_ids"].shape[1] == n_x + -(-n_x // 2)


def test_bottleneck_pooling_without_enough_tokens_says_what_to_do(tiny):
    from lbr_utils.pooling import bottleneck_pooling

    with pytest.raises(ValueError, match="add_bottleneck_tokens"):
        build_inputs(tiny[1], [TEXTS[1]], bottleneck_pooling(2), max_length=64)
    with pytest.raises(ValueError, match="ratio"):
        bottleneck_pooling(0)
