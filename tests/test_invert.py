"""Embedding inversion: the inverter reads only the embedding, cached decoding, noise."""

import numpy as np
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


def test_words_and_set_scores_by_hand():
    from lbr_utils.text import set_scores, words

    assert words("Displacement of pump (ICD-10-CM T85.625; other)") == {"displacement", "of", "pump", "icd", "10",
                                                                        "cm", "t85.625", "other"}
    s = set_scores({"a", "b", "x"}, {"a", "b", "c", "d"})
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(4 / 7) and set_scores(set(), {"a"})["f1"] == 0.0


def test_a_bag_of_words_probe_reads_words_that_the_vector_encodes():
    """Vectors made as sums of word directions (plus noise) carry their words linearly: the probe
    recovers most of them for unseen texts; from shuffled vectors it recovers far less."""
    import numpy as np

    from lbr_utils.invert import BagOfWordsProbe, ProbeConfig
    from lbr_utils.text import set_scores, words

    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(40)]
    direction = {w: rng.normal(size=64) for w in vocab}

    def sample(n):
        texts = [" ".join(rng.choice(vocab, size=5, replace=False)) for _ in range(n)]
        vecs = np.stack([sum(direction[w] for w in t.split()) + rng.normal(0, 0.1, 64) for t in texts])
        return texts, vecs

    train_texts, train_vecs = sample(600)
    test_texts, test_vecs = sample(100)
    probe = BagOfWordsProbe(ProbeConfig(epochs=300)).fit(train_texts, train_vecs)
    own = np.mean([set_scores(g, words(t))["f1"] for g, t in zip(probe.predict(test_vecs), test_texts)])
    other = np.mean([set_scores(g, words(t))["f1"] for g, t in zip(probe.predict(np.roll(test_vecs, 1, 0)), test_texts)])
    assert own > 0.8 and other < 0.3
    # vectors that carry no words: the held-out loss turns up early, and training keeps that epoch
    blind = BagOfWordsProbe(ProbeConfig(epochs=300)).fit(train_texts, rng.normal(size=train_vecs.shape))
    assert blind.epochs_kept < 300 and blind.held_out_f1 < probe.held_out_f1


def test_the_attacker_keeps_the_probe_that_recovers_more_of_his_held_out_texts():
    import numpy as np

    from lbr_utils.invert import ProbeConfig, best_probe

    rng = np.random.default_rng(1)
    vocab = [f"w{i}" for i in range(30)]
    texts = [" ".join(rng.choice(vocab, size=4, replace=False)) for _ in range(300)]
    # a word is present when its coordinate is positive: a threshold a linear probe reads directly
    vecs = np.stack([[1.0 if w in t.split() else -1.0 for w in vocab] for t in texts]) + rng.normal(0, 0.3, (300, 30))
    candidates = (ProbeConfig(hidden=0), ProbeConfig(hidden=8, lr=1e-2))
    chosen = best_probe(texts, vecs, candidates=candidates)
    assert chosen.held_out_f1 == max(best_probe(texts, vecs, candidates=(c,)).held_out_f1 for c in candidates)


def test_nearest_neighbour_inversion_returns_the_closest_public_text():
    import numpy as np

    from lbr_utils.invert import nearest_neighbour_inversion

    public = ["a", "b", "c"]
    vecs = np.eye(3)
    assert nearest_neighbour_inversion(np.array([[0.1, 0.9, 0.0], [2.0, 0.0, 0.1]]), public, vecs) == ["b", "a"]
    with pytest.raises(ValueError):
        nearest_neighbour_inversion(vecs, [], np.zeros((0, 3)))


def test_the_decoder_records_a_dev_curve_of_word_f1():
    """With dev texts, training scores what the decoder writes from their vectors every eval_every
    steps (a fraction); without them, no curve."""
    from lbr_utils.invert import InversionConfig, train_inverter

    model, tok = build_tiny()
    inv = Inverter(model, tok, embed_dim=4, prefix_len=2, lora_rank=2)
    texts = ["alpha beta", "gamma delta", "beta gamma", "delta alpha"]
    vectors = np.eye(4, dtype=np.float32)
    cfg = InversionConfig(steps=4, batch_size=2, max_length=4, eval_every=2)
    result = train_inverter(inv, texts, vectors, cfg, show_progress=False, dev=(texts[:2], vectors[:2]))
    assert [p["step"] for p in result.curve] == [2, 4]
    assert all(0.0 <= p["dev word F1"] <= 1.0 for p in result.curve)
    assert train_inverter(inv, texts, vectors, cfg, show_progress=False).curve == []


def test_the_decoder_is_handed_back_at_its_best_dev_point(monkeypatch):
    """A flat rate can end a run in a dip: the attack reads the decoder as it was at its best dev point.
    Scripted dev scores put the best at the first point (step 2 of 8); the decoder handed back then has
    the weights of a 2-step run (same seed, batches and flat rate), not those of the 8th step."""
    import lbr_utils.invert as invert

    texts = ["alpha beta", "gamma delta", "beta gamma", "delta alpha"]
    vectors = np.eye(4, dtype=np.float32)
    calls = []

    def scripted(guess, truth):  # 1.0 for the first evaluation's texts, 0.0 after
        calls.append(1)
        return {"f1": 1.0 if len(calls) <= 2 else 0.0}

    monkeypatch.setattr(invert, "set_scores", scripted)

    def trained(steps: int, dev) -> Inverter:
        model, tok = build_tiny()
        inv = Inverter(model, tok, embed_dim=4, prefix_len=2, lora_rank=2)
        cfg = invert.InversionConfig(steps=steps, batch_size=2, max_length=4, eval_every=2, lr=1e-2)
        invert.train_inverter(inv, texts, vectors, cfg, show_progress=False, dev=dev)
        return inv

    best = trained(8, (texts[:2], vectors[:2])).state_dict()
    short = trained(2, None).state_dict()
    assert len(calls) == 8 and all(torch.allclose(best[k], short[k]) for k in short)
