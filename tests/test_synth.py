import numpy as np
import pandas as pd
import pytest

from lbr_utils.data import QARecord
from lbr_utils.models import load_causal_lm
from lbr_utils.synth import HFGenerator, chat_prompt, clean_generation, consistency_filter, synthesise_queries

RECS = [QARecord("1", "m", "asthma nos", "Unspecified asthma", "J45"),
        QARecord("2", "m", "broken arm", "Fracture of humerus", "S42"),
        QARecord("3", "m", "sugar disease", "Type 2 diabetes mellitus", "E11")]


class Scripted:
    """A stand-in generator: the interface is all the pipeline needs. It answers each document with a
    scripted raw generation, cleaned the way ``HFGenerator`` cleans its output, and records its prompts."""

    def __init__(self, replies: dict[str, str]):
        self.replies, self.prompts = replies, []

    def generate(self, prompts):
        self.prompts += prompts
        return [clean_generation(self.replies[p[-1]["content"]]) for p in prompts]  # last turn: the document


def test_any_generator_works_through_the_interface():
    twin = QARecord("4", "m", "asthma", "Unspecified asthma", "J45", "J4")  # same answer as record 1
    gen = Scripted({"Unspecified asthma": ' Query: "asthma not specified"\nText: Unspecified asthma',
                    "Fracture of humerus": "broken upper arm bone",
                    "Type 2 diabetes mellitus": "TYPE 2 DIABETES MELLITUS"})  # degenerate: the answer itself
    out = synthesise_queries(gen, RECS + [twin])
    # One prompt per distinct answer, each the few-shot conversation ending in that document.
    assert gen.prompts == [chat_prompt("query", a) for a in ("Unspecified asthma", "Fracture of humerus",
                                                              "Type 2 diabetes mellitus")]
    by_answer = {r.answer: r for r in out}
    assert len(out) == 2 and set(by_answer) == {"Unspecified asthma", "Fracture of humerus"}
    # A query equal to its answer (any case) teaches nothing and is dropped.
    assert "Type 2 diabetes mellitus" not in by_answer
    arm = by_answer["Fracture of humerus"]
    assert (arm.id, arm.domain, arm.question, arm.entity, arm.group) == \
        ("2-synq", "m", "broken upper arm bone", "S42", "")
    asthma = by_answer["Unspecified asthma"]  # the label, the quotes and the second line are gone
    assert asthma.question == "asthma not specified" and asthma.entity == "J45"
    assert asthma.id in {"1-synq", "4-synq"} and asthma.domain == "m"


def test_empty_generations_are_dropped():
    gen = Scripted({"Unspecified asthma": "", "Fracture of humerus": 'Query: ""',  # nothing left once cleaned
                    "Type 2 diabetes mellitus": "sugar"})
    out = synthesise_queries(gen, RECS)
    assert [(r.id, r.question, r.answer) for r in out] == [("3-synq", "sugar", "Type 2 diabetes mellitus")]


def test_hf_generator_runs_a_chat_model_with_left_padding():
    model, tok = load_causal_lm("tiny")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %} =>{% endif %}"
    prompts = ["one", "a longer prompt here", "three"]
    gen = HFGenerator(model, tok, max_new_tokens=3, batch_size=2)
    out = gen.generate(prompts)
    assert gen.stats["prompts"] == 3 and tok.padding_side == "right"  # restored
    # Each prompt generates in a padded batch what it generates alone (right padding would not: the
    # short prompt would continue from pad tokens).
    alone = HFGenerator(model, tok, max_new_tokens=3, batch_size=1)
    assert out == [alone.generate([p])[0] for p in prompts] and all(out)
    with pytest.raises(ValueError, match="no prompts"):
        gen.generate([])


def test_consistency_filter_keeps_queries_whose_document_ranks_first():
    def embed(texts):
        keys = {"asthma": 0, "humerus": 1, "arm": 1, "diabetes": 2, "sugar": 2}
        v = np.full((len(texts), 3), 0.01)
        for i, t in enumerate(texts):
            for w, k in keys.items():
                if w in t.lower():
                    v[i, k] += 1
        return v

    wrong = QARecord("4", "m", "asthma attack", "Fracture of humerus", "S42")  # points at the wrong document
    kept = consistency_filter(embed, RECS + [wrong])
    assert [r.id for r in kept] == ["1", "2", "3"]
    with pytest.raises(ValueError, match="not in the candidate pool"):
        consistency_filter(embed, RECS, pool=["x"])


def test_the_few_shot_prompt_is_a_conversation_ending_in_the_document():
    messages = chat_prompt("query", "Unspecified asthma")
    roles = [m["role"] for m in messages]
    assert roles[-1] == "user" and messages[-1]["content"] == "Unspecified asthma"
    assert roles[:-1] == ["user", "assistant"] * (len(roles) // 2)
    assert messages[0]["content"].startswith("Write a short search query")


def test_generations_are_cleaned():
    assert clean_generation(' Query: "broken arm"\nText: more') == "broken arm"
    assert clean_generation("asthma attack") == "asthma attack"
    assert clean_generation("Text: Fracture of humerus") == "Fracture of humerus"


def test_degenerate_generations_are_caught_and_ordinary_ones_kept():
    from lbr_utils.synth import degenerate

    for text in ["(IUI)\n\nA.I.P.A.A.A.A.A.A.A.A.A.A.", ",-2014-11-11-11-11-11-11-11-11-1", "the the the the the the",
                 "mood disorder with psychotic symptoms, Hallucinogen use, unspecified, Hallucinogen use, unspecified",
                 "complications in the puerperium, unspecified (IVA-IVA-IVA-"]:  # a loop the token limit cut short
        assert degenerate(text), text
    for text in ["broken upper arm bone", "python sort a list", "Displacement of intrathecal infusion pump",
                 "dose of 10000 units", "encounter (ICD-10-CM Z00.00) ...."]:
        assert not degenerate(text), text


def test_a_query_that_echoes_a_prompt_example_is_caught_unless_its_document_says_it_too():
    from lbr_utils.data import QARecord
    from lbr_utils.studies._synthetic_cells import _quotes_code
    from lbr_utils.synth import echoes_example

    anaemia = "Refractory anemia with excess of blasts (ICD-10-CM D46.20; Refractory anemia)"
    assert echoes_example("adult onset diabetes with excess of blasts", anaemia)
    assert not echoes_example("adult onset diabetes", "Adult onset diabetes, type 2 (ICD-10-CM E11.9; Diabetes)")
    assert not echoes_example("anemia with too many blasts", anaemia)
    card = QARecord(id="q", domain="medical", question="?", answer=anaemia, entity="D46.20", group="D46")
    assert _quotes_code("anemia d46.20 blasts", card) and not _quotes_code("anemia with blasts", card)


def test_near_copies_are_flagged_and_mined_negatives_are_never_the_positive():
    from lbr_utils.data import QARecord
    from lbr_utils.synth import mined_negatives, near_copies
    from lbr_utils.text import jaccard

    assert near_copies(["Fracture of humerus", "Fracture of femur, closed"],
                       ["fracture of the humerus", "Fracture of humerus"]) == [True, False]
    card = "ICD-10-CM A00.0: Cholera due to Vibrio cholerae 01, biovar cholerae. Under: Cholera"
    span = "Cholera due to Vibrio cholerae 01"  # Jaccard 0.55 with its card, yet nothing but the card
    assert near_copies([span], [card]) == [False] and near_copies([span], [card], contained=True) == [True]
    pool = [QARecord(str(i), "m", f"q{i}", answer, entity) for i, (answer, entity) in enumerate([
        ("Fracture of humerus", "S42"), ("Fracture of the humerus, left", "S42"), ("Fracture of femur", "S72"),
        ("Asthma, chronic", "J45"), ("Fracture of humerus", "S42.1")])]
    query = QARecord("q", "m", "broken humerus fracture", "Fracture of humerus", "S42")
    [negative] = mined_negatives([query], pool)
    assert negative == "Fracture of femur"  # another entity, and not the positive under another code
    assert jaccard(negative, query.answer) < 0.7


def test_own_ranks_and_bm25_scores_by_hand():
    """Row i's own document is column own[i]; its rank counts the documents scored strictly higher.
    BM25 scores a query's own words above unrelated text and an empty query nowhere."""
    from lbr_utils.synth import bm25_scores, own_ranks

    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.7]])
    assert own_ranks(scores, [0, 1]).tolist() == [1, 2]  # a tie (0.2, 0.2) counts for the own document
    bm = bm25_scores(["fracture humerus", ""], ["Fracture of humerus", "Type 2 diabetes", "Asthma"])
    assert bm[0].argmax() == 0 and bm[0, 1] == bm[0, 2] == 0 and not bm[1].any()


def test_chapter4_training_sets_share_documents_and_sizes():
    """Every arm trains on the kept documents: human and synthetic pair the same answers with
    different questions, the mix splits them in half, unfiltered draws as many from all written
    queries, and human + synthetic is both; the consistency arm draws from every query that passed the
    checks before the consistency filter."""
    from lbr_utils.studies.ch04_synthetic import consistency_arm, datasets, funnel

    rows = [{"id": f"d{i}", "entity": f"e{i}", "group": "g", "document": f"doc {i}", "human question": f"human {i}",
             "query": "" if i == 5 else f"synthetic {i}", "empty": i == 5, "degenerate": i == 4,
             "echoes a prompt example": i == 6, "copies its document": False, "quotes its document's code": i == 7,
             "not consistent": i == 3, "kept": i < 3} for i in range(8)]
    sets = datasets(rows, "medical", seed=0)
    answers = {name: sorted(r.answer for r in recs) for name, recs in sets.items()}
    assert answers["human"] == answers["synthetic"] == ["doc 0", "doc 1", "doc 2"]
    assert [r.question for r in sets["human"]] == ["human 0", "human 1", "human 2"]
    assert all(r.question.startswith("synthetic") for r in sets["synthetic"] + sets["synthetic (unfiltered)"])
    assert len(sets["synthetic (unfiltered)"]) == 3 and len(sets["human + synthetic"]) == 6
    mix = sets["mix (equal pairs)"]
    assert len(mix) == 3 and len({r.answer for r in mix}) == 3
    assert sorted(r.question.split()[0] for r in mix) == ["human", "synthetic", "synthetic"]
    table = funnel(pd.DataFrame(rows).assign(seed=0))
    assert table[0].tolist() == [8, 7, 6, 5, 5, 4, 3] and table["share of written"].iloc[-1] == pytest.approx(3 / 8)
    # The consistency arm: as many pairs as were kept, from the queries that passed every check but the last
    # (documents 0-3), so a query the filter alone dropped (document 3) can be drawn and no other can.
    drawn = [consistency_arm(rows, "medical", seed) for seed in range(10)]
    assert all(len(arm) == 3 and {r.answer for r in arm} <= {f"doc {i}" for i in range(4)} for arm in drawn)
    assert any("doc 3" in {r.answer for r in arm} for arm in drawn)
    assert all(r.question == r.answer.replace("doc", "synthetic") for arm in drawn for r in arm)
