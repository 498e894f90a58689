"""Embedding inversion: the inverter reads only the embedding, cached decoding, noise, and the
chapter 7 scoring helpers."""

import numpy as np
import pandas as pd
import pytest
import torch

from lbr_utils.invert import Inverter, add_noise, token_f1
from lbr_utils.models import build_tiny

PASSAGE = "Iatrogenic carnitine deficiency (ICD-10-CM E71.43; Disorders of carnitine metabolism)"


def test_token_f1_by_hand():
    _, tok = build_tiny()
    assert token_f1(tok, PASSAGE, PASSAGE) == 1.0 and token_f1(tok, "", PASSAGE) == 0.0


@pytest.fixture(scope="module")
def inverter():
    model, tok = build_tiny()
    return Inverter(model, tok, embed_dim=12, prefix_len=3, lora_rank=2)


def test_the_inverter_reads_only_the_embedding(inverter):
    """The first predicted token depends on the embedding alone; every later one on the embedding and
    the tokens before it, never on the rest of the text."""
    tok = inverter.tokenizer
    e = torch.randn(2, 12)
    ids = tok(["alpha beta gamma", "delta beta gamma"], return_tensors="pt", padding=True)["input_ids"]
    mask = torch.ones_like(ids)
    logits = []
    for target in (ids[:1], ids[1:]):
        with torch.no_grad():
            prefix = inverter.prefix(e[:1])
            inputs = torch.cat([prefix, inverter.lm.get_input_embeddings()(target)], 1)
            logits.append(inverter.lm(inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2])).logits[0])
    first = inverter.prefix_len - 1
    torch.testing.assert_close(logits[0][first], logits[1][first])  # texts differ, prediction of token 0 does not
    other = inverter.prefix(e[1:])
    assert not torch.allclose(inverter.prefix(e[:1]), other)
    assert len(inverter.generate(e, max_new_tokens=3)) == 2
    loss = inverter(e, ids, mask)
    assert loss.isfinite() and loss > 0
    # The training loss reads the text through the embedding: another embedding, another loss.
    assert inverter(e[:1], ids[:1], mask[:1]) != inverter(e[1:], ids[:1], mask[:1])


def test_inverter_decoding_with_the_cache_equals_a_full_forward(inverter):
    """Decoding with the KV cache (one token per step, positions counted after the prefix) must give,
    at every step, the logits of one forward pass over the prefix and the tokens generated so far."""
    from lbr_utils.generate import decode_greedy

    e = torch.randn(1, 12)
    steps = []
    hook = inverter.lm.get_output_embeddings().register_forward_hook(lambda m, i, o: steps.append(o[0, -1]))
    with torch.no_grad():
        res = inverter.lm(inputs_embeds=inverter.prefix(e), use_cache=True)
        [new] = decode_greedy(inverter.lm, res.logits[:, -1], res.past_key_values, inverter.prefix_len, 6)
    hook.remove()
    with torch.no_grad():
        inputs = torch.cat([inverter.prefix(e), inverter.lm.get_input_embeddings()(torch.tensor([new]))], 1)
        full = inverter.lm(inputs_embeds=inputs).logits[0, inverter.prefix_len - 1:]
    torch.testing.assert_close(torch.stack(steps), full, atol=1e-4, rtol=1e-4)


def test_batched_decoding_equals_one_prompt_at_a_time(inverter):
    """Every row of a batch gets, at every step, the logits it gets decoded alone."""
    from lbr_utils.generate import decode_greedy

    def step_logits(e: torch.Tensor) -> torch.Tensor:
        steps = []
        hook = inverter.lm.get_output_embeddings().register_forward_hook(lambda m, i, o: steps.append(o[:, -1]))
        with torch.no_grad():
            res = inverter.lm(inputs_embeds=inverter.prefix(e), use_cache=True)
            decode_greedy(inverter.lm, res.logits[:, -1], res.past_key_values, inverter.prefix_len, 4)
        hook.remove()
        return torch.stack(steps, 1)  # (batch, steps, vocab)

    e = torch.randn(3, 12)
    torch.testing.assert_close(step_logits(e), torch.cat([step_logits(x[None]) for x in e]), atol=1e-4, rtol=1e-4)
    assert len(inverter.generate(e, max_new_tokens=3, batch_size=2)) == 3


def test_inverter_bad_input(inverter):
    with pytest.raises(ValueError, match="shape"):
        inverter.prefix(torch.randn(2, 13))
    with pytest.raises(ValueError, match="noise scale"):
        add_noise(np.ones((2, 4)), -0.1)
    noisy = add_noise(np.ones((2, 4)), 0.0)
    np.testing.assert_allclose(np.linalg.norm(noisy, axis=1), 1.0, rtol=1e-6)


def test_noisy_corpus_embedder_perturbs_stored_documents_only():
    from lbr_utils.studies.ch07_inversion import noisy_corpus_embedder

    embed = lambda texts: np.array([[1.0, 0.0] if t.startswith("d") else [0.0, 1.0] for t in texts])
    fn = noisy_corpus_embedder(embed, ["d1", "d2"], scale=0.5, seed=0)
    out = fn(["d1", "q", "d2"])
    assert np.allclose(out[1], [0.0, 1.0])  # a query is only normalised
    assert not np.allclose(out[0], [1.0, 0.0]) and not np.allclose(out[0], out[2])


def test_halving_table_finds_the_first_noise_that_halves_f1():
    from lbr_utils.studies.ch07_inversion import halving_table

    inv = pd.DataFrame({"embedder": ["a"] * 3 + ["b"] * 2, "noise": [0.1, 0.0, 0.2, 0.0, 0.1],
                        "token_f1": [30.0, 40.0, 10.0, 50.0, 45.0], "NDCG@10": [0.5, 0.6, 0.2, 0.7, 0.69]})
    table = halving_table(inv).set_index("embedder")
    assert table.loc["a", "noise where F1 halves"] == 0.2
    assert table.loc["a", "NDCG@10 cost (points)"] == pytest.approx(40.0)
    assert table.loc["b", "noise where F1 halves"] == "> 0.1"
    assert np.isnan(table.loc["b", "token F1 there"])
    # Measured from a floor of 20 (the template alone), "halfway" is 30, which noise 0.1 reaches.
    floor = pd.DataFrame({"embedder": ["a", "b"], "token_f1": [20.0, 0.0]})
    assert halving_table(inv, floor).set_index("embedder").loc["a", "noise where F1 halves"] == 0.1
    at_floor = pd.DataFrame({"embedder": ["a", "b"], "token_f1": [45.0, 60.0]})
    table = halving_table(inv, at_floor).set_index("embedder")
    assert table.loc["b", "noise where F1 halves"] == "no leak to halve" and table.loc["b", "leak above the floor"] == -10.0


def test_inversion_scores_count_entities_by_hand():
    from lbr_utils.studies.ch07_inversion import inversion_scores

    _, tok = build_tiny()
    texts = ["Asthma (ICD-10-CM J45; a lung disease)", "Gout (ICD-10-CM M10; a joint disease)"]
    guesses = [texts[0], "gout of the knee (ICD-10-CM M11)"]
    s = inversion_scores(tok, guesses, texts)
    assert s["exact_match"] == 50.0 and s["codes_recovered"] == 50.0 and s["conditions_recovered"] == 100.0
    assert 50.0 < s["token_f1"] < 100.0
