import numpy as np
import pytest

from lbr_utils.embedders import LLMEmbedder, SentenceTransformerEmbedder
from lbr_utils.pooling import POOLINGS, get_pooling

TEXTS = ["short", "a somewhat longer text with more tokens in it", "medium length text"]


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_a_text_alone_equals_the_text_in_a_padded_batch(tiny, pooling, side):
    model, tok = tiny
    tok.padding_side = side
    try:
        emb = LLMEmbedder(model, tok, pooling=pooling, batch_size=8)
        batch = emb.embed(TEXTS)
        alone = np.stack([LLMEmbedder(model, tok, pooling=pooling).embed([t])[0] for t in TEXTS])
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
