"""Context compression: what each model may see, the truncation baseline, training, and bad input."""

import numpy as np
import pytest
import torch

from lbr_utils.compress import (RECONSTRUCT_PROMPT, CompressionConfig, Example, as_training_row, dev_loss,
                                evaluate_reading, example_mean_loss, qa_examples, token_accuracy, train_compressor, truncate)
from lbr_utils.costs import cpu_ticks, decoding_cost
from lbr_utils.data import QARecord
from lbr_utils.lbr import build_generative_batch, generative_loss, target_token_losses
from lbr_utils.masks import BOTTLENECK, INPUT, TARGET
from lbr_utils.models import add_bottleneck_tokens, build_tiny
from lbr_utils.pooling import bos_ids

PASSAGE = "Iatrogenic carnitine deficiency (ICD-10-CM E71.43; Disorders of carnitine metabolism)"
MEDICAL = [QARecord(f"m{i}", "medical", f"term {i}", f"Condition number {i} (ICD-10-CM A0{i}.1; Parent {i})", f"A0{i}.1")
           for i in range(6)]


def test_the_compressed_question_never_sees_the_passage():
    model, tok = build_tiny(num_layers=1)
    add_bottleneck_tokens(model, tok, 64)
    example = Example(PASSAGE, " Question: What is the code? Answer:", " E71.43")
    row, ratio = as_training_row(tok, example, "compressed", 4.0, 96)
    a = build_generative_batch(tok, [row], 96, 16, [ratio])
    b = dict(a, input_ids=a["input_ids"].clone())
    passage = a["segments"] == INPUT
    b["input_ids"][passage] = torch.randint(5, 300, (int(passage.sum()),))  # another passage, same length
    target = a["segments"][0] == TARGET
    with torch.no_grad():
        logits = [model(input_ids=x["input_ids"], attention_mask=x["attention_mask"],
                        position_ids=x["position_ids"]).logits[0] for x in (a, b)]
    assert (a["segments"] == BOTTLENECK).sum() == -(-int(passage.sum()) // 4)
    assert torch.equal(logits[0][target], logits[1][target])  # one layer: question and answer see only B
    assert not torch.allclose(logits[0][~target], logits[1][~target])


def test_truncation_keeps_exactly_the_bottleneck_budget():
    _, tok = build_tiny()
    row, ratio = as_training_row(tok, Example(PASSAGE), "truncated", 4.0, 96)
    ids = tok(PASSAGE, add_special_tokens=False)["input_ids"]
    budget = -(-(len(bos_ids(tok)) + len(ids)) // 4)  # the k = ceil(n / 4) tokens compression would get
    assert 0 < budget < len(ids)
    assert ratio is None and row == (tok.decode(ids[:budget]), RECONSTRUCT_PROMPT, PASSAGE)  # the first k tokens
    assert truncate(tok, PASSAGE, 3) == tok.decode(tok(PASSAGE, add_special_tokens=False)["input_ids"][:3])
    row, ratio = as_training_row(tok, Example(PASSAGE), "compressed", 4.0, 96)
    assert ratio == 4.0 and row == (PASSAGE, RECONSTRUCT_PROMPT, PASSAGE)


def test_qa_passages_ask_about_one_of_their_facts():
    examples = qa_examples(MEDICAL, 5, facts_per_passage=3, seed=1)
    for e in examples:
        assert e.answer.strip() in e.passage and e.task == "qa"
    with pytest.raises(ValueError, match="fact records"):
        qa_examples(MEDICAL[:2], 1, facts_per_passage=3)


def test_compressor_trains_and_saves_decoding_memory():
    model, tok = build_tiny()
    examples = qa_examples(MEDICAL, 8, seed=0) + [Example(r.answer) for r in MEDICAL]
    cfg = CompressionConfig(ratios=(2.0, 4.0), steps=10, batch_size=4, lr=3e-3, max_input=64, max_target=16)
    result = train_compressor(model, tok, examples, cfg, show_progress=False)
    assert np.mean(result.losses[-3:]) < np.mean(result.losses[:3])
    add_bottleneck_tokens(model, tok, 64)
    full = decoding_cost(model, tok, PASSAGE * 3, None, new_tokens=2)
    small = decoding_cost(model, tok, PASSAGE * 3, 4.0, new_tokens=2)
    assert small["cache_entries"] == -(-full["cache_entries"] // 4) and small["cache_mib"] < full["cache_mib"] / 3


def test_bad_compression_ratios_are_clear_errors():
    with pytest.raises(ValueError, match="ratios"):
        CompressionConfig(ratios=(8.0, 0.0))
    with pytest.raises(ValueError, match="ratios"):
        CompressionConfig(ratios=())


def test_every_example_weighs_the_same_in_the_compressor_loss():
    """A short answer and a long passage: the loss is the mean of the two rows' own means, not the
    mean over all their tokens (which the long row would dominate)."""
    model, tok = build_tiny()
    rows = [("a passage", " Q:", "J45"), ("another passage", RECONSTRUCT_PROMPT, "a much longer text to write out in full")]
    batch = build_generative_batch(tok, rows, 16, 16, None)
    with torch.no_grad():
        losses, targets = target_token_losses(model, batch), batch["labels"] != -100
        by_row = [float(losses[i][targets[i]].mean()) for i in range(2)]
        assert targets[0].sum() < targets[1].sum()
        assert float(example_mean_loss(model, batch)) == pytest.approx(np.mean(by_row), rel=1e-5)
        assert float(example_mean_loss(model, batch)) != pytest.approx(float(generative_loss(model, batch)), rel=1e-3)


def test_busy_cores_count_the_ticks_other_work_took():
    """/proc/stat's first line: user nice system idle iowait ...; idle and iowait are not busy."""
    assert cpu_ticks("cpu  10 0 5 80 5 0 0 0 0 0\ncpu0 ...") == (15, 100)


def test_token_accuracy_by_hand():
    _, tok = build_tiny()
    assert token_accuracy(tok, PASSAGE, PASSAGE) == 1.0


def test_the_full_passage_is_the_ceiling_of_a_compressor_trained_on_all_modes():
    """A model trained on every reading mode of a few passages rewrites a memorised passage exactly
    when it reads it in full: the ceiling that the compressed and truncated readings are judged under.
    The passages share their opening, longer than the truncation budget, so the first k tokens cannot
    tell which memorised tail to write (a test on passages that differ early could not fail). The
    compressed reading, at the same budget, must write it too."""
    model, tok = build_tiny()
    opening = "Disorders of the heart and the lung,"  # 17 tokens of the tiny tokenizer; a passage is at most 32
    tails = ["seen in old men", "caused by a virus", "after long surgery"]
    examples = [Example(f"{opening} {tail}") for tail in tails]
    cfg = CompressionConfig(ratios=(4.0,), steps=300, batch_size=6, lr=3e-3, max_input=48, max_target=32)
    budget = -(-(len(bos_ids(tok)) + len(tok(examples[0].passage, add_special_tokens=False)["input_ids"])) // 4)
    assert budget < len(tok(opening, add_special_tokens=False)["input_ids"])  # truncation sees the opening only
    assert all(len(tok(e.passage, add_special_tokens=False)["input_ids"]) <= cfg.max_target for e in examples)
    train_compressor(model, tok, examples, cfg, show_progress=False)
    full = evaluate_reading(model, tok, examples, "full", 1.0, cfg)
    truncated = evaluate_reading(model, tok, examples, "truncated", 4.0, cfg)
    assert full["token_accuracy"] > 90 and full["token_accuracy"] > truncated["token_accuracy"] + 5
    # the positive control for chapter 6's verdict: the compressed reading's path (bottleneck tokens that
    # the target reads, the passage masked) can carry a memorised passage's tail past the truncation
    # budget, so a compressor that does not beat truncation is the training's finding, not a broken path
    compressed = evaluate_reading(model, tok, examples, "compressed", 4.0, cfg)
    assert compressed["token_accuracy"] > 90 and compressed["token_accuracy"] > truncated["token_accuracy"] + 5
    # what was written is kept with its per-example ROUGE-L, so a low score can be read
    assert len(full["hypotheses"]) == len(full["ROUGE-L per example"]) == len(examples)
    assert np.mean(full["ROUGE-L per example"]) == pytest.approx(full["ROUGE-L"])


def test_the_curriculum_reconstructs_first_and_the_dev_curve_is_recorded():
    """The first steps draw reconstruction examples only; afterwards QA examples come in. With dev
    examples the curve has each task's compressed and truncated score, as fractions."""
    from lbr_utils.compress import curriculum

    examples = qa_examples(MEDICAL, 8, seed=0) + [Example(r.answer) for r in MEDICAL]
    cfg = CompressionConfig(ratios=(4.0,), steps=6, batch_size=4, reconstruction_steps=3, eval_every=3,
                            max_input=64, max_target=8)
    at = curriculum(examples, cfg)
    assert all(e.task == "reconstruct" for step in range(3) for e in at(step))
    assert any(e.task == "qa" for step in range(3, 9) for e in at(step))
    model, tok = build_tiny()
    dev = {"qa": examples[:2], "reconstruct": examples[-2:]}
    result = train_compressor(model, tok, examples, cfg, show_progress=False, dev=dev)
    assert [p["step"] for p in result.curve] == [1, 3, 6]  # an early point shows where the curve starts
    assert set(result.curve[0]) >= {"qa, compressed", "qa, truncated", "reconstruct, compressed"}
    assert all(0.0 <= p["reconstruct, truncated"] <= 1.0 for p in result.curve)
    # the dev loss is the training loss of the same rows (one batch here), in nats per target token
    rows, ratios = zip(*[as_training_row(tok, e, "compressed", cfg.dev_ratio, cfg.max_input) for e in dev["qa"]])
    batch = build_generative_batch(tok, rows, cfg.max_input, cfg.max_target, list(ratios))
    with torch.no_grad():
        assert dev_loss(model, tok, dev["qa"], "compressed", cfg) == pytest.approx(float(generative_loss(model, batch)))
    assert result.curve[-1]["qa, compressed, loss"] > 0
    full = decoding_cost(model, tok, PASSAGE * 3, None, new_tokens=2)
    assert full["end_to_end_s"] == pytest.approx(full["prefill_s"] + full["decode_s"])


def test_a_focus_share_of_rows_reads_the_judged_ratio_and_modes_stay_uniform():
    """focus_share = 0.5 over four ratios: the judged ratio in 0.5 + 0.5 / 4 of rows, every other
    ratio in 0.5 / 4; each mode in a third of the rows at every ratio (compressed and truncated stay
    matched)."""
    import random
    from collections import Counter

    from lbr_utils.compress import MODES, draw_reading

    cfg = CompressionConfig(ratios=(2.0, 4.0, 8.0, 16.0), dev_ratio=8.0, focus_share=0.5)
    rng = random.Random(0)
    draws = Counter(draw_reading(rng, cfg) for _ in range(40_000))
    ratio_share = {r: sum(n for (_, q), n in draws.items() if q == r) / 40_000 for r in cfg.ratios}
    assert ratio_share[8.0] == pytest.approx(0.625, abs=0.01)
    assert all(ratio_share[r] == pytest.approx(0.125, abs=0.01) for r in (2.0, 4.0, 16.0))
    at_eight = {m: draws[(m, 8.0)] / sum(draws[(x, 8.0)] for x in MODES) for m in MODES}
    assert all(share == pytest.approx(1 / 3, abs=0.015) for share in at_eight.values())
    with pytest.raises(ValueError, match="focus_share"):
        CompressionConfig(focus_share=1.5)
