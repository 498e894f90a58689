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


def _contains_run(row: list[int], run: list[int]) -> bool:
    return any(row[i:i + len(run)] == run for i in range(len(row) - len(run) + 1))


def test_templates_never_push_the_text_out(tiny):
    _, tok = tiny
    # Distinct words, so the first 8 tokens are a run that a cut, a shift or a replacement would break.
    long = " ".join(f"patient {i} has a fever and a cough" for i in range(20))
    text_ids = tok(long, add_special_tokens=False)["input_ids"]
    assert len(text_ids) > 8 and len(set(text_ids[:8])) > 1
    head = text_ids[:8]
    for name in POOLINGS:
        batch = build_inputs(tok, [long], get_pooling(name), max_length=8)
        row = batch["input_ids"][0].tolist()
        assert _contains_run(row, head), f"{name}: the text's first 8 tokens are not in the input"
        assert not _contains_run(row, text_ids[:9])  # and the text was cut to max_length, not the template
        assert batch["attention_mask"][0].all()  # one row: no padding, every token is attended
        # Pooled: the 8 text tokens (echo: of the second copy), or the whole prompt for PromptEOL.
        assert batch["pool_mask"][0].sum() == (len(row) if name == "prompteol" else 8)
        if name == "echo":
            assert row[-8:] == head and _contains_run(row[:-8], head)


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
