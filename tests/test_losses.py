import pytest
import torch
import torch.nn.functional as F

from lbr_utils.losses import info_nce, matryoshka


@pytest.fixture(scope="module")
def st_model():
    from sentence_transformers import SentenceTransformer

    from lbr_utils.embedders import minilm_path

    return SentenceTransformer(minilm_path(), device="cpu").eval()


def _random(b=6, d=16, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, d, generator=g), torch.randn(b, d, generator=g), torch.randn(b * k, d, generator=g))


@pytest.mark.parametrize("temperature", [0.02, 0.05, 1.0])
@pytest.mark.parametrize("with_negatives", [False, True])
def test_info_nce_equals_sentence_transformers_mnrl(st_model, temperature, with_negatives):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    q, p, n = _random()
    ref = MultipleNegativesRankingLoss(st_model, scale=1 / temperature)
    embeddings = [q, p] + ([n] if with_negatives else [])
    expected = ref.compute_loss_from_embeddings(embeddings, labels=None)
    ours = info_nce(q, p, n if with_negatives else None, temperature=temperature)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)


def test_info_nce_equals_a_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    cos = torch.tensor([[2 ** -0.5, 0.0], [2 ** -0.5, 1.0]])
    logits = cos / 0.1
    expected = -(logits[0, 0] - torch.logsumexp(logits[0], 0) + logits[1, 1] - torch.logsumexp(logits[1], 0)) / 2
    assert info_nce(q, p, temperature=0.1).item() == pytest.approx(expected.item(), rel=1e-5)


def test_false_negatives_are_masked_out():
    q, p, n = _random(b=4, k=1)
    p[1] = p[0]  # rows 0 and 1 share an answer (same entity)
    q = p + 0.3 * q  # queries close to their answers, so a false negative competes with the positive
    masked = info_nce(q, p, n, temperature=0.5, group_ids=["a", "a", "b", "c"], negative_group_ids=["x", "b", "y", "z"])
    # By hand: drop, for each query, the candidates of its own entity other than its positive.
    cand = torch.cat([p, n])
    logits = F.normalize(q, dim=-1) @ F.normalize(cand, dim=-1).T / 0.5
    keep = torch.ones_like(logits, dtype=torch.bool)
    keep[0, 1] = keep[1, 0] = False  # a/a in-batch
    keep[2, 5] = False  # query 2 (b) vs the hard negative of entity b
    losses = [-(logits[i, i] - torch.logsumexp(logits[i][keep[i]], 0)) for i in range(4)]
    assert masked.item() == pytest.approx(torch.stack(losses).mean().item(), rel=1e-5)
    assert masked.item() < info_nce(q, p, n, temperature=0.5).item() - 0.1


def test_matryoshka_equals_sentence_transformers(st_model):
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

    queries = ["what relieves pain", "a code for asthma", "sort a list in python"]
    docs = ["aspirin is a painkiller", "J45.909 unspecified asthma", "sorted(iterable) returns a new list"]
    dims, weights = [384, 128, 32], [1.0, 0.5, 0.25]
    features = [st_model.tokenize(queries), st_model.tokenize(docs)]
    ref = MatryoshkaLoss(st_model, MultipleNegativesRankingLoss(st_model, scale=2.0), dims, weights)
    with torch.no_grad():
        expected = ref(features, labels=None)
        q = st_model(st_model.tokenize(queries))["sentence_embedding"]
        d = st_model(st_model.tokenize(docs))["sentence_embedding"]
        ours = matryoshka(info_nce, dims, weights)(q, d, temperature=1 / 2.0)
    assert expected.item() > 0.1  # a loss far from 0, so the comparison means something
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)


def test_bad_arguments_are_rejected():
    q, p, n = _random()
    with pytest.raises(ValueError, match="temperature"):
        info_nce(q, p, temperature=0)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(q, p, temperature=-0.1)
    with pytest.raises(ValueError, match="must match"):
        info_nce(q, p[:3])
    with pytest.raises(ValueError, match="group id"):
        info_nce(q, p, group_ids=["a"])
    with pytest.raises(ValueError, match="positive"):
        matryoshka(info_nce, [0])
    with pytest.raises(ValueError, match="exceeds"):
        matryoshka(info_nce, [64])(q, p)


def test_info_nce_keeps_fp32_cosines_under_bf16_autocast():
    """Near-duplicate vectors (cosines near 1, as LLM states are) would round to bf16's ~0.004 grid
    under autocast; the loss must equal the fp32 computation."""
    torch.manual_seed(0)
    base = torch.randn(1, 64)
    q, p = base + 0.01 * torch.randn(8, 64), base + 0.01 * torch.randn(8, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = info_nce(q, p, temperature=0.05)
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, info_nce(q, p, temperature=0.05), atol=1e-6)
