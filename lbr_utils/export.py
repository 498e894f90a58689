"""Save a trained embedder to a folder and load it back with one call.

``save_embedder(embedder, path)`` writes the weights (LoRA merged in), the tokenizer and a small
``lbr_embedder.json`` that says how to read a vector out (pooling, layer, attention, length).
``load_embedder(path).encode(texts)`` gives the same vectors. Where the pooling is one that
sentence-transformers has (mean or last token over the plain text, causal attention, last layer),
the folder is also a sentence-transformers model: ``SentenceTransformer(path).encode(texts)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .embedders import LLMEmbedder
from .models import load_causal_lm
from .pooling import Pooling

CONFIG = "lbr_embedder.json"
_ST_POOLING = {"mean": "mean", "last": "lasttoken"}


def sentence_transformers_compatible(embedder: LLMEmbedder) -> bool:
    p = embedder.pooling
    return (p.input_format == "plain" and p.pool in _ST_POOLING and embedder.causal and embedder.layer == -1
            and not getattr(embedder.tokenizer, "add_bos_token", False))


def save_embedder(embedder: LLMEmbedder, path: str | Path) -> Path:
    """Write ``embedder`` to ``path`` (created); returns the path."""
    path = Path(path)
    model = embedder.model
    if hasattr(model, "merge_and_unload"):  # a peft (LoRA) model: fold the adapters into the weights
        model = model.merge_and_unload()
    model.save_pretrained(path)
    embedder.tokenizer.save_pretrained(path)
    config = {"pooling": asdict(embedder.pooling), "layer": embedder.layer, "causal": embedder.causal,
              "max_length": embedder.max_length, "batch_size": embedder.batch_size}
    (path / CONFIG).write_text(json.dumps(config, indent=2))
    if sentence_transformers_compatible(embedder):
        _write_sentence_transformers_files(path, model.config.hidden_size, embedder)
    return path


def _write_sentence_transformers_files(path: Path, dim: int, embedder: LLMEmbedder) -> None:
    """modules.json + a Pooling module: the layout ``SentenceTransformer(path)`` reads."""
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}], indent=2))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": embedder.max_length,
                                                                "do_lower_case": False}))
    (path / "1_Pooling").mkdir(exist_ok=True)
    mode = _ST_POOLING[embedder.pooling.pool]
    (path / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": mode == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_lasttoken": mode == "lasttoken", "include_prompt": True}))


def load_embedder(path: str | Path, bf16: bool = False) -> LLMEmbedder:
    """An :class:`LLMEmbedder` from a folder written by :func:`save_embedder`."""
    path = Path(path)
    if not (path / CONFIG).exists():
        raise FileNotFoundError(f"{path} holds no {CONFIG}: was it written by save_embedder()?")
    config = json.loads((path / CONFIG).read_text())
    model, tok = load_causal_lm(str(path))
    return LLMEmbedder(model, tok, pooling=Pooling(**config["pooling"]), layer=config["layer"], causal=config["causal"],
                       max_length=config["max_length"], batch_size=config["batch_size"], bf16=bf16)
