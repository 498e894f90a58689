import math
import socket

import numpy as np
import pytest
from scipy.stats import spearmanr

from lbr_utils.data import RetrievalSet, STSSet, load_domain
from lbr_utils.embedders import LLMEmbedder
from lbr_utils.evaluate import BM25, Encoder, evaluate_models, to_wide
from lbr_utils.profiles import get_profile

# Twelve documents on the unit circle at angles 0.0, 0.1, ..., 1.1; a query's cosine ranking is
# then fixed by its own angle, so the ranks below can be read off by hand.
ANGLES = {f"doc{j}": 0.1 * j for j in range(12)}
ANGLES.update({"query A": 0.0, "query B": 1.1, "query C": 0.62})
HAND_RANKS = {"qA": 3, "qB": 12, "qC": 5}  # rank of each query's relevant document


def circle_embed(texts):
    return np.array([[math.cos(ANGLES[t]), math.sin(ANGLES[t])] for t in texts])


TOY = RetrievalSet(queries={"qA": "query A", "qB": "query B", "qC": "query C"},
                   corpus={f"d{j}": f"doc{j}" for j in range(12)},
                   qrels={"qA": {"d2": 1}, "qB": {"d0": 1}, "qC": {"d4": 1}})


def metric(table, name):
    return float(table[table.metric == name].score.iloc[0])


def test_retrieval_metrics_equal_a_hand_computation():
    table = evaluate_models({"circle": circle_embed}, {"toy": TOY})
    ranks = list(HAND_RANKS.values())
    ndcg = np.mean([1 / math.log2(r + 1) if r <= 10 else 0.0 for r in ranks])  # one relevant doc: IDCG = 1
    recall = np.mean([r <= 10 for r in ranks])
    mrr = np.mean([1 / r if r <= 10 else 0.0 for r in ranks])
    assert metric(table, "NDCG@10") == pytest.approx(ndcg, abs=1e-4)
    assert metric(table, "R@10") == pytest.approx(recall, abs=1e-4)
    assert metric(table, "MRR@10") == pytest.approx(mrr, abs=1e-4)


def test_similarity_functions_rank_differently_only_when_norms_differ():
    def scaled(texts):  # doc11 is long: dot product favours it, cosine and Euclidean on unit vectors do not
        v = circle_embed(texts)
        return v * np.array([[10.0 if t == "doc11" else 1.0] for t in texts])

    unit = {s: metric(evaluate_models({"m": Encoder(circle_embed, s)}, {"toy": TOY}), "MRR@10")
            for s in ("cosine", "dot", "euclidean")}
    assert unit["cosine"] == pytest.approx(unit["dot"]) == pytest.approx(unit["euclidean"])
    dot = metric(evaluate_models({"m": Encoder(scaled, "dot")}, {"toy": TOY}), "MRR@10")
    cos = metric(evaluate_models({"m": Encoder(scaled, "cosine")}, {"toy": TOY}), "MRR@10")
    assert cos == pytest.approx(unit["cosine"]) and dot < cos
    with pytest.raises(ValueError, match="unknown similarity"):
        Encoder(circle_embed, "jaccard")


def test_query_prefix_reaches_queries_only():
    seen = []

    def recording(texts):
        seen.extend(texts)
        return circle_embed([t.removeprefix("Instruct: find it\nQuery: ") for t in texts])

    evaluate_models({"m": Encoder(recording, query_prefix="Instruct: find it\nQuery: ")}, {"toy": TOY})
    prefixed = [t for t in seen if t.startswith("Instruct:")]
    assert sorted(prefixed) == sorted("Instruct: find it\nQuery: " + q for q in TOY.queries.values())
    assert set(seen) - set(prefixed) == set(TOY.corpus.values())


def test_sts_spearman_equals_scipy_on_cosines():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(20)]
    vecs = dict(zip(words, rng.normal(size=(20, 8))))
    index_pairs = [(i, i + 10) for i in range(10)] + [(i, i + 1) for i in range(0, 20, 2)]  # all distinct
    pairs = tuple((words[i], words[j], float(rng.uniform(0, 10))) for i, j in index_pairs)
    table = evaluate_models({"random": lambda ts: np.stack([vecs[t] for t in ts])}, sts=[STSSet("toy", pairs)])
    cos = [vecs[a] @ vecs[b] / np.linalg.norm(vecs[a]) / np.linalg.norm(vecs[b]) for a, b, _ in pairs]
    assert metric(table, "Spearman") == pytest.approx(spearmanr(cos, [s for *_, s in pairs]).statistic, abs=1e-6)


@pytest.mark.disable_socket
def test_the_whole_harness_runs_offline(tiny):
    with pytest.raises(Exception, match="[Ss]ocket"):
        socket.socket()  # proves sockets really are disabled inside this test
    model, tok = tiny
    data = {"medical": load_domain("medical", get_profile("smoke")).eval}
    table = evaluate_models({"BM25": BM25, "tiny": LLMEmbedder(model, tok)}, data,
                            [STSSet("toy", (("a b", "a c", 1.0), ("x", "y z", 0.0), ("a", "a b", 2.0)))])
    assert set(table.model) == {"BM25", "tiny"}
    assert table.score.between(-1, 1).all()
    wide = to_wide(table)
    assert list(wide.columns) == ["medical", "toy"] and np.isnan(wide.loc["BM25", "toy"])


def test_bad_input_is_rejected_clearly():
    with pytest.raises(ValueError, match="no models"):
        evaluate_models({}, {"toy": TOY})
    with pytest.raises(ValueError, match="no tasks"):
        evaluate_models({"circle": circle_embed})
    with pytest.raises(ValueError, match="unknown model shortcut"):
        evaluate_models({"x": "tfidf"}, {"toy": TOY})
    with pytest.raises(ValueError, match="at least one query"):
        RetrievalSet({}, {"d": "x"}, {})
    with pytest.raises(ValueError, match="missing from the corpus"):
        RetrievalSet({"q": "x"}, {"d": "x"}, {"q": {"nope": 1}})


def test_per_query_ndcg_averages_to_mteb_ndcg_for_dense_and_bm25():
    """The per-query scores a bootstrap resamples are mteb's own: their mean is mteb's NDCG@10."""
    import numpy as np

    from lbr_utils.data.records import RetrievalSet
    from lbr_utils.evaluate import BM25, evaluate_models, ndcg_per_query

    corpus = {f"d{i}": f"document {i} about {w} and {v}" for i, (w, v) in
              enumerate(zip("fever cough asthma fracture rash burn ulcer sprain".split(), "a b c d e f g h".split()))}
    queries = {f"q{i}": f"{w} question" for i, w in enumerate("fever cough asthma fracture".split())}
    data = RetrievalSet(queries, corpus, {f"q{i}": {f"d{i}": 1} for i in range(4)})
    rng = np.random.default_rng(0)
    vectors = {}

    def embed(texts):
        return np.stack([vectors.setdefault(t, rng.normal(size=16)) for t in texts]).astype(np.float32)

    table = evaluate_models({"random": embed, "bm25": BM25}, {"demo": data}, per_query=True)
    for _, row in table[table.metric == "NDCG@10"].iterrows():
        assert set(row.per_query) == set(queries)
        assert np.mean(list(row.per_query.values())) == pytest.approx(row.score, abs=1e-4)
    # by hand: the relevant document at rank 2 of the ranking scores 1 / log2(3)
    assert ndcg_per_query({"q": {"a": 0.9, "b": 0.5}}, {"q": {"b": 1}}) == {"q": pytest.approx(1 / np.log2(3))}


def test_the_fast_dev_ndcg_equals_the_harness():
    import numpy as np

    from lbr_utils.data.records import RetrievalSet
    from lbr_utils.evaluate import evaluate_models, ranked_ndcg

    rng = np.random.default_rng(1)
    corpus = {f"d{i}": f"doc {i}" for i in range(30)}
    data = RetrievalSet({f"q{i}": f"query {i}" for i in range(10)}, corpus, {f"q{i}": {f"d{3 * i}": 1} for i in range(10)})
    vectors = {}

    def embed(texts):
        return np.stack([vectors.setdefault(t, rng.normal(size=8)) for t in texts]).astype(np.float32)

    fast = ranked_ndcg(embed, data)
    table = evaluate_models({"random": embed}, {"demo": data}, per_query=True)
    row = table[table.metric == "NDCG@10"].iloc[0]
    assert fast == pytest.approx(row.per_query, abs=1e-5)
    assert np.mean(list(fast.values())) == pytest.approx(row.score, abs=1e-4)
