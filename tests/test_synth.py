import numpy as np
import pytest

from lbr_utils.data import QARecord
from lbr_utils.models import load_causal_lm
from lbr_utils.synth import HFGenerator, chat_prompt, clean_generation, consistency_filter, synthesise_queries

RECS = [QARecord("1", "m", "asthma nos", "Unspecified asthma", "J45"),
        QARecord("2", "m", "broken arm", "Fracture of humerus", "S42"),
        QARecord("3", "m", "sugar disease", "Type 2 diabetes mellitus", "E11")]


class Echo:
    """A stand-in generator: the interface is all the pipeline needs."""

    def generate(self, prompts):
        return [p[-1]["content"].lower() for p in prompts]  # the last user turn: the document itself


def test_any_generator_works_through_the_interface():
    out = synthesise_queries(Echo(), RECS)
    # Echo repeats the answer, which the pipeline drops: a query equal to its answer teaches nothing.
    assert out == []


def test_hf_generator_runs_a_chat_model_with_left_padding():
    model, tok = load_causal_lm("tiny")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %} =>{% endif %}"
    gen = HFGenerator(model, tok, max_new_tokens=3, batch_size=2)
    out = gen.generate(["one", "a longer prompt here", "three"])
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert gen.stats["prompts"] == 3 and tok.padding_side == "right"  # restored
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
