"""The poolings: the pool functions by hand, the inputs each template builds (echo pools over the
second copy, a template never pushes the text out), the bottleneck pooling's errors."""

import numpy as np
import pytest
import torch

from lbr_utils.pooling import POOLINGS, build_inputs, get_pooling, mean_pool, weighted_mean_pool

TEXTS = ["short", "a somewhat longer text with more tokens in it", "medium length text"]


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


def test_bottleneck_pooling_without_enough_tokens_says_what_to_do(tiny):
    from lbr_utils.pooling import bottleneck_pooling

    with pytest.raises(ValueError, match="add_bottleneck_tokens"):
        build_inputs(tiny[1], [TEXTS[1]], bottleneck_pooling(2), max_length=64)
    with pytest.raises(ValueError, match="ratio"):
        bottleneck_pooling(0)


def test_a_fixed_bottleneck_gives_every_text_the_same_k_tokens():
    """LBR reads the same <bn_k> for a short and a long text: k = ceil((max_length + 1) / r)."""
    from lbr_utils.models import add_bottleneck_tokens, build_tiny
    from lbr_utils.pooling import bottleneck_ids, bottleneck_pooling

    model, tok = build_tiny()
    add_bottleneck_tokens(model, tok, 8)
    pooling = bottleneck_pooling(4.0, max_length=16)
    assert pooling.k == 5
    batch = build_inputs(tok, ["a", "a much longer text about fevers and coughs in children here"], pooling, 16)
    bn = bottleneck_ids(tok)
    for ids, pool, real in zip(batch["input_ids"], batch["pool_mask"], batch["attention_mask"]):
        row = ids[real.bool()].tolist()
        assert row[-5:] == bn[:5] and sum(i in bn for i in row) == 5
        assert ids[pool.bool()].tolist()[-1] == bn[4]  # the last pooled (read) token is <bn_4>
    assert bottleneck_pooling(4.0).k == 0  # without a length: per text, as the compressor reads
