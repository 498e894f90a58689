"""A trained embedder saved to a folder loads back with one call and gives the same vectors."""

import numpy as np
import pytest

from lbr_utils.embedders import LLMEmbedder
from lbr_utils.export import load_embedder, save_embedder
from lbr_utils.models import add_bottleneck_tokens, add_lora, build_tiny
from lbr_utils.pooling import bottleneck_pooling

TEXTS = ["fever and cough", "a fracture of the upper arm bone", "aspirin"]


def _trained_lora_model():
    model, tok = build_tiny()
    model = add_lora(model, r=2, alpha=4, dropout=0.0)
    for name, p in model.named_parameters():  # stand-in for training: move the adapters off zero
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    return model, tok


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_round_trip_ours_and_sentence_transformers(tmp_path, pooling):
    from sentence_transformers import SentenceTransformer

    model, tok = _trained_lora_model()
    embedder = LLMEmbedder(model, tok, pooling=pooling)
    before = embedder.encode(TEXTS)
    save_embedder(embedder, tmp_path / "emb")
    np.testing.assert_allclose(load_embedder(tmp_path / "emb").encode(TEXTS), before, atol=1e-5)
    st = SentenceTransformer(str(tmp_path / "emb"), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), before, atol=1e-4)


def test_round_trip_of_the_lbr_bottleneck_embedding(tmp_path):
    model, tok = build_tiny()
    add_bottleneck_tokens(model, tok, 8)
    embedder = LLMEmbedder(model, tok, pooling=bottleneck_pooling(4.0))
    before = embedder.encode(TEXTS)
    save_embedder(embedder, tmp_path / "lbr")
    assert not (tmp_path / "lbr" / "modules.json").exists()  # no sentence-transformers pooling for this one
    np.testing.assert_allclose(load_embedder(tmp_path / "lbr").encode(TEXTS), before, atol=1e-5)


def test_loading_a_folder_that_is_not_an_embedder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_embedder"):
        load_embedder(tmp_path)


def test_package_level_loader():
    import lbr_utils
    from lbr_utils.export import load_embedder

    assert lbr_utils.load_embedder is load_embedder
