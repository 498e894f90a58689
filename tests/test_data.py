import pytest

from lbr_utils.data import (DOMAINS, STS_NAMES, QARecord, deduplicate, domain_records, leakage, load_domain,
                            load_sts, split_by_entity)
from lbr_utils.profiles import get_profile

SMOKE, CPU = get_profile("smoke"), get_profile("cpu")


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("profile", [SMOKE, CPU], ids=["smoke", "cpu"])
def test_split_sizes_follow_the_profile(domain, profile):
    s, sized = load_domain(domain, profile), profile.for_domain(domain)
    assert len(s.gl) == sized.n_gl and len(s.cl) == sized.n_cl
    assert len(s.eval.queries) == sized.n_eval and len(s.dev.queries) == sized.n_dev
    # Every query has exactly one relevant document, and it is in the corpus.
    for rs in (s.eval, s.dev):
        assert all(len(rel) == 1 and set(rel) <= rs.corpus.keys() for rel in rs.qrels.values())
    assert len(s.eval.corpus) == sized.n_eval + sized.n_distractors  # the held-out distractors were added
    assert len(s.dev.corpus) == 2 * sized.n_dev


def test_code_is_split_by_module_and_no_function_name_crosses():
    """No module and no function name is on both sides of the code domain's split (a same-named
    training function would hand the evaluation answer over)."""
    from lbr_utils.profiles import get_profile

    s = load_domain("code", get_profile("cpu"))
    train = s.gl + s.cl
    held_out = s.eval_records + s.dev_records + s.distractor_records
    assert not {r.group for r in train} & {r.group for r in held_out}
    assert not {r.entity.split(":")[1] for r in train} & {r.entity.split(":")[1] for r in s.eval_records + s.dev_records}


@pytest.mark.parametrize("domain", DOMAINS)
def test_same_seed_same_splits_other_seed_other_splits(domain):
    a, b, c = load_domain(domain, SMOKE, 0), load_domain(domain, SMOKE, 0), load_domain(domain, SMOKE, 1)
    assert (a.gl, a.cl, a.eval) == (b.gl, b.cl, b.eval)
    assert a.eval.queries != c.eval.queries


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_evaluation_query_or_answer_in_training(domain, seed):
    s = load_domain(domain, CPU, seed)
    assert leakage(s) == {}
    train_questions = {r.question.lower() for r in s.gl + s.cl}
    assert not train_questions & {q.lower() for q in s.eval.queries.values()}


def test_leakage_check_finds_a_planted_leak():
    s = load_domain("medical", SMOKE)
    leaked = s.eval_records[0]
    s.cl.append(QARecord("planted", "medical", leaked.question.upper(), leaked.answer, "other-entity"))
    found = leakage(s)
    assert found["queries"] == [leaked.question] and found["pairs"] == [leaked.question]


def test_leakage_check_finds_a_planted_dev_query_and_distractor():
    s = load_domain("medical", SMOKE)
    dev, distractor = s.dev_records[0], s.distractor_records[0]
    s.gl.append(QARecord("planted-1", "medical", "q", dev.answer, "elsewhere"))
    s.gl.append(QARecord("planted-2", "medical", "another q", "another a", distractor.entity))
    found = leakage(s)
    assert found["answers"] == [dev.answer] and found["distractors"] == [distractor.answer]


@pytest.mark.parametrize("domain", DOMAINS)
def test_no_domain_leaks_at_any_profile(domain):
    """No evaluation or dev query, answer or entity, and no distractor, is in a training split."""
    from lbr_utils.profiles import get_profile, lbr_profile

    for profile in (SMOKE, get_profile("cpu"), lbr_profile(get_profile("cpu"))):
        assert leakage(load_domain(domain, profile)) == {}


def test_deduplicate_drops_ambiguous_questions_and_answers():
    recs = [QARecord("1", "d", "shared name", "card A", "A"), QARecord("2", "d", "shared name", "card B", "B"),
            QARecord("3", "d", "only a", "card A", "A"), QARecord("4", "d", "only c", "card C", "C"),
            QARecord("5", "d", "other c", "card C", "C2"), QARecord("6", "d", "same", "Same", "D")]
    assert [r.id for r in deduplicate(recs)] == ["3"]


def test_split_errors_are_clear():
    with pytest.raises(ValueError, match="no records"):
        split_by_entity([], 1, 1, 1, 0, seed=0)
    with pytest.raises(ValueError, match="not enough data"):
        load_domain("code", get_profile("smoke", n_gl=10**6))
    with pytest.raises(ValueError, match="unknown domain"):
        domain_records("law")


@pytest.mark.parametrize("domain", DOMAINS)
def test_records_look_like_their_domain(domain):
    recs = domain_records(domain)
    assert len(recs) > 3000
    assert all(r.domain == domain and r.question and r.answer for r in recs)


def test_the_papers_example_is_in_the_chemistry_data():
    pairs = {(r.question.lower(), r.entity) for r in domain_records("chemistry")}
    assert ("acetylsalicylic acid", "aspirin") in pairs


def test_sts_sets_have_their_published_sizes():
    sizes = {name: len(load_sts(name)) for name in STS_NAMES}
    assert sizes["lee"] == 50 * 49 // 2
    assert 350 <= sizes["wordsim353"] <= 353 and sizes["simlex999"] == 999
    assert len(load_sts("lee", n=40)) == 40 and load_sts("lee", n=40) == load_sts("lee", n=40)
    with pytest.raises(ValueError, match="unknown STS set"):
        load_sts("sick")
