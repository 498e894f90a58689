"""An instruction read before a query but left out of its pooling: exact positions, padding-proof,
and documents untouched."""

import numpy as np
import pytest
import torch

from lbr_utils.embedders import LLMEmbedder
from lbr_utils.instruct import InstructedEmbedder, instructed_inputs
from lbr_utils.models import build_tiny, decoder
from lbr_utils.pooling import bos_ids

INSTRUCTION = "Instruct: find the passage\nQuery: "


@pytest.fixture(scope="module")
def tiny():
    return build_tiny()


def test_the_mean_covers_the_text_tokens_only(tiny):
    """The row is the plain reading of instruction + text; the mean covers the tokens that hold the
    text's characters, and "last" is the plain embedder's vector for the same string."""
    model, tok = tiny
    embedder = InstructedEmbedder(LLMEmbedder(model, tok, pooling="mean", max_length=64), INSTRUCTION)
    text = "fever and cough"
    enc = tok(INSTRUCTION + text, add_special_tokens=False, return_offsets_mapping=True)
    ids = bos_ids(tok) + enc["input_ids"]
    in_text = [end > len(INSTRUCTION) for _, end in enc["offset_mapping"]]
    assert any(in_text) and not all(in_text)
    with torch.no_grad():
        states = decoder(model)(input_ids=torch.tensor([ids])).last_hidden_state[0, len(bos_ids(tok)):]
    by_hand = states[torch.tensor(in_text)].mean(0).numpy()
    assert np.allclose(embedder.embed([INSTRUCTION + text])[0], by_hand, atol=1e-5)
    # The instruction still conditions the text (causal attention): not the text embedded alone.
    alone = LLMEmbedder(model, tok, pooling="mean", max_length=64).embed([text])[0]
    assert not np.allclose(by_hand, alone, atol=1e-3)
    last = LLMEmbedder(model, tok, pooling="last", max_length=64)
    assert np.allclose(InstructedEmbedder(last, INSTRUCTION).embed([INSTRUCTION + text])[0],
                       last.embed([INSTRUCTION + text])[0], atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "last", "weighted_mean"])
def test_padding_side_and_batch_neighbours_change_nothing(tiny, pooling):
    model, tok = tiny
    texts = [INSTRUCTION + "a", INSTRUCTION + "a much longer query about chronic asthma", "a document"]
    vectors = {}
    for side in ("left", "right"):
        tok.padding_side = side
        embedder = InstructedEmbedder(LLMEmbedder(model, tok, pooling=pooling, max_length=64, batch_size=8), INSTRUCTION)
        vectors[side] = embedder.embed(texts)
    tok.padding_side = "right"
    assert np.allclose(vectors["left"], vectors["right"], atol=1e-5)
    one = InstructedEmbedder(LLMEmbedder(model, tok, pooling=pooling, max_length=64), INSTRUCTION).embed(texts[:1])
    assert np.allclose(one[0], vectors["right"][0], atol=1e-5)


def test_documents_are_the_wrapped_embedders_and_odd_input_is_refused(tiny):
    model, tok = tiny
    base = LLMEmbedder(model, tok, pooling="mean", max_length=64)
    assert np.allclose(InstructedEmbedder(base, INSTRUCTION).embed(["a document"]), base.embed(["a document"]))
    with pytest.raises(ValueError, match="plain pooling"):
        InstructedEmbedder(LLMEmbedder(model, tok, pooling="prompteol"), INSTRUCTION)
    with pytest.raises(ValueError, match="no tokens of its own"):
        instructed_inputs(tok, [""], INSTRUCTION, 64)
    n_instruction = len(tok(INSTRUCTION, add_special_tokens=False)["input_ids"])
    with pytest.raises(ValueError, match="no tokens of its own"):  # the cut leaves none of the text
        instructed_inputs(tok, ["ab"], INSTRUCTION, n_instruction - 1)
    flags = instructed_inputs(tok, ["ab"], INSTRUCTION, 64)["pool_mask"][0].tolist()
    assert flags[:len(bos_ids(tok))] == [0] * len(bos_ids(tok)) and flags[-1] == 1 and 0 < sum(flags) <= 2
