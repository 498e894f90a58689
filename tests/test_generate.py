"""Generation through the bottleneck: decoding from the pruned KV cache equals training's masked
forward pass, batched decoding equals decoding each prompt alone, and the generation metrics."""

import pytest
import torch

from _bottleneck import PAIRS, RATIO
from lbr_utils.generate import decode_greedy, generation_scores, greedy_generate, prefill, stack_caches
from lbr_utils.lbr import build_generative_batch
from lbr_utils.masks import BOTTLENECK as B
from lbr_utils.masks import INPUT as X
from lbr_utils.masks import TARGET as Y


def test_decoding_from_the_pruned_cache_equals_the_masked_forward(tiny_bn):
    """Generation through the bottleneck keeps only B in the KV cache; the logits must be those of
    training's masked forward pass, position by position (teacher forcing)."""
    model, tok = tiny_bn
    x, y = PAIRS[1]
    batch = build_generative_batch(tok, [(x, y)], 32, 16, RATIO)
    seg = batch["segments"][0]
    with torch.no_grad():
        masked = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits[0]
        logits, cache, position = prefill(model, tok, x, 32, RATIO)
        assert cache.get_seq_length() == int((seg == B).sum())  # x is gone from the cache
        steps = [logits[0]]
        for token in batch["input_ids"][0, seg == Y][:-1].tolist():
            out = model(input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True,
                        position_ids=torch.tensor([[position]]))
            steps.append(out.logits[0, -1])
            cache, position = out.past_key_values, position + 1
    predicting_targets = torch.nonzero(seg == Y).squeeze(1) - 1  # position t - 1 predicts target t
    torch.testing.assert_close(torch.stack(steps), masked[predicting_targets], atol=1e-4, rtol=1e-4)


def test_greedy_generation_and_its_scores(tiny_bn):
    model, tok = tiny_bn
    prompts = ["alpha", "beta gamma"]
    out = greedy_generate(model, tok, prompts, max_new_tokens=4, ratio=RATIO)
    # One text per prompt, in order: its greedy tokens decoded from the pruned cache (which equal the masked
    # forward's, test above), stopped at EOS, detokenised.
    alone = [decode_greedy(model, *prefill(model, tok, p, 64, RATIO), 4, tok.eos_token_id)[0] for p in prompts]
    assert out == [tok.decode(r, skip_special_tokens=True).strip() for r in alone]
    with pytest.raises(ValueError, match="no prompts"):
        greedy_generate(model, tok, [])
    perfect = generation_scores(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert perfect["BLEU-4"] == pytest.approx(100) and perfect["ROUGE-L"] == pytest.approx(100)
    # ROUGE-L by hand: LCS("the cat sat", "the dog sat") = 2 tokens; P = R = 2/3 -> F1 = 2/3.
    assert generation_scores(["the cat sat"], ["the dog sat"])["ROUGE-L"] == pytest.approx(200 / 3)
    each = generation_scores(["the cat sat on the mat", "the cat sat"], ["the cat sat on the mat", "the dog sat"],
                             per_question=True)
    assert each["BLEU-4 per question"][0] == pytest.approx(100) and each["ROUGE-L per question"][1] == pytest.approx(200 / 3)
    assert each["ROUGE-L"] == pytest.approx(sum(each["ROUGE-L per question"]) / 2)


@pytest.mark.parametrize("ratio, suffixes", [(None, None), (RATIO, None), (RATIO, [" q one", " a longer question"])])
def test_batched_decoding_equals_decoding_each_prompt_alone(tiny_bn, ratio, suffixes):
    """Prompts of different lengths, stacked into one left-padded cache: every row gets, at every
    step, the logits it gets decoded alone (plain, through the bottleneck, with a question after it)."""
    model, tok = tiny_bn
    prompts = ["alpha", "beta gamma delta epsilon zeta"]
    suffixes = suffixes or ["", ""]

    def step_logits(batch: list[tuple]) -> torch.Tensor:
        logits, caches, positions = zip(*batch)
        cache, mask = stack_caches(list(caches))
        steps = []
        hook = model.get_output_embeddings().register_forward_hook(lambda m, i, o: steps.append(o[:, -1]))
        decode_greedy(model, torch.cat(logits), cache, torch.tensor(positions), 5, attention_mask=mask)
        hook.remove()
        return torch.stack(steps, 1)

    def prefills():
        return [prefill(model, tok, p, 32, ratio, s) for p, s in zip(prompts, suffixes)]

    alone = torch.cat([step_logits([row]) for row in prefills()])
    torch.testing.assert_close(step_logits(prefills()), alone, atol=1e-4, rtol=1e-4)
    assert greedy_generate(model, tok, prompts, 5, 32, ratio, suffixes, batch_size=2) == \
        greedy_generate(model, tok, prompts, 5, 32, ratio, suffixes, batch_size=1)


def test_decoding_a_question_after_the_bottleneck_equals_the_masked_forward(tiny_bn):
    model, tok = tiny_bn
    x, q, y = "a passage about a drug and its uses", " which drug?", " aspirin"
    batch = build_generative_batch(tok, [(x, q, y)], 32, 16, RATIO)
    seg, labels = batch["segments"][0], batch["labels"][0]
    with torch.no_grad():
        masked = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits[0]
        logits, cache, position = prefill(model, tok, x, 32, RATIO, suffix=q)
    first_answer = int(torch.nonzero(labels != -100)[0])
    assert position == first_answer and cache.get_seq_length() == int((seg != X).sum()) - (len(seg) - first_answer)
    torch.testing.assert_close(logits[0], masked[first_answer - 1], atol=1e-4, rtol=1e-4)
