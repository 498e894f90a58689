import numpy as np
import pytest

from lbr_utils.embedders import LLMEmbedder, SentenceTransformerEmbedder
from lbr_utils.pooling import POOLINGS, build_inputs, get_pooling

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


def test_settings_are_frozen_and_replace_starts_a_fresh_cache(tiny):
    """A vector embedded under one setting is never handed back under another: settings cannot be
    assigned, and ``replace`` gives a copy with its own, empty cache."""
    model, tok = tiny
    text = ["one two three four five six seven eight nine ten eleven twelve"]
    short = LLMEmbedder(model, tok, pooling="mean", max_length=4)
    cut = short.embed(text)
    with pytest.raises(AttributeError, match="frozen"):
        short.max_length = 32
    longer = short.replace(max_length=32)
    assert longer.max_length == 32 and short.max_length == 4 and longer.model is short.model
    assert not np.allclose(longer.embed(text), cut)  # computed anew, not read from the old cache
    assert np.array_equal(short.embed(text), cut)  # the original keeps its own vectors
    assert np.allclose(longer.embed(text), LLMEmbedder(model, tok, pooling="mean", max_length=32).embed(text))
    assert longer.replace(pooling="last").pooling.pool == "last"
    with pytest.raises(TypeError, match="unknown setting"):
        short.replace(temperature=0.1)


@pytest.mark.parametrize("causal", [True, False])
def test_packed_texts_embed_exactly_as_padded_ones(causal):
    """Training packs several texts per row: every pooling must read the same states as unpacked,
    with causal and with bidirectional attention, and the gradients must agree too."""
    import torch

    from lbr_utils.models import add_bottleneck_tokens, build_tiny
    from lbr_utils.pooling import bottleneck_pooling

    model, tok = build_tiny()
    add_bottleneck_tokens(model, tok, 8)
    texts = ["a", "a much longer text about fevers and coughs in children", "three words here", "x y"]
    for pooling in [*POOLINGS, bottleneck_pooling(4.0)]:
        emb = LLMEmbedder(model, tok, pooling=pooling, causal=causal, max_length=16)
        padded = build_inputs(tok, texts, emb.pooling, 16)
        packed = build_inputs(tok, texts, emb.pooling, 16, pack_width=96, causal=causal)
        assert packed["input_ids"].shape[0] < len(texts)
        a, b = emb.forward(padded), emb.forward(packed)
        assert torch.allclose(a, b, atol=1e-5), pooling
        model.zero_grad()
        a.sum().backward()
        grad = model.get_input_embeddings().weight.grad.clone()
        model.zero_grad()
        b.sum().backward()
        assert torch.allclose(grad, model.get_input_embeddings().weight.grad, rtol=1e-4, atol=1e-4), pooling
        model.zero_grad()
