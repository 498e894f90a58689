"""Embedding inversion: recover a text from its embedding alone (chapter 7).

The inverter follows GEIA / vec2text's first step (Li et al., 2023; Morris et al., 2023): a small
MLP maps the embedding to ``m`` soft tokens, and a causal LM (SmolLM2 with LoRA) learns to write the
text after that prefix. The decoder's only input is the prefix: it never sees a token of the text
except the ones it has generated itself (teacher-forced during training).

Two attacks need no decoder at all: a bag-of-words probe (a linear or small MLP map from the vector
to the set of words in its text, Song & Raghunathan 2020) and nearest-neighbour inversion (the closest
text of a public corpus the attacker embedded himself). They bound what a vector gives away before
any generation. A defence is judged against every attack (four, with a probe refit on noised vectors).

The defence is the simplest one a practitioner controls: Gaussian noise on the stored embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .generate import decode_greedy
from .lbr import next_token_losses
from .models import add_lora
from .pooling import token_ids
from .text import set_scores, words
from .train import TrainConfig, TrainResult, train


class Inverter(nn.Module):
    """Embedding (dim ``embed_dim``) -> ``prefix_len`` soft tokens -> a LoRA-tuned causal LM."""

    def __init__(self, model, tokenizer, embed_dim: int, prefix_len: int = 8, lora_rank: int = 16) -> None:
        super().__init__()
        if embed_dim < 1 or prefix_len < 1:
            raise ValueError("embed_dim and prefix_len must be >= 1")
        hidden = model.config.hidden_size
        self.lm = add_lora(model, r=lora_rank, alpha=2 * lora_rank, dropout=0.0)
        self.tokenizer, self.embed_dim, self.prefix_len = tokenizer, embed_dim, prefix_len
        self.project = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, prefix_len * hidden))

    def prefix(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"expected embeddings of shape (batch, {self.embed_dim}), got {tuple(embeddings.shape)}")
        e = F.normalize(embeddings.float(), dim=-1)  # only the direction: cosine is what retrieval keeps
        return self.project(e).view(len(e), self.prefix_len, -1)

    def forward(self, embeddings: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """Mean next-token loss of the targets given only the prefix (teacher forcing)."""
        prefix = self.prefix(embeddings)
        tokens = self.lm.get_input_embeddings()(target_ids)
        inputs = torch.cat([prefix.to(tokens.dtype), tokens], 1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=target_mask.dtype, device=target_mask.device), target_mask], 1)
        labels = F.pad(target_ids.masked_fill(target_mask == 0, -100), (self.prefix_len, 0), value=-100)
        losses = next_token_losses(self.lm, labels, inputs_embeds=inputs, attention_mask=mask)
        return losses.sum() / target_mask.sum().clamp(min=1)

    @torch.no_grad()
    def generate(self, embeddings: torch.Tensor, max_new_tokens: int = 32, batch_size: int = 32) -> list[str]:
        """Greedy decoding from each embedding's prefix alone, a batch at a time (every prompt is
        ``prefix_len`` soft tokens, so there is no padding to get wrong)."""
        self.eval()
        out = []
        for chunk in embeddings.split(batch_size):
            res = self.lm(inputs_embeds=self.prefix(chunk), use_cache=True)
            rows = decode_greedy(self.lm, res.logits[:, -1], res.past_key_values, self.prefix_len, max_new_tokens,
                                 self.tokenizer.eos_token_id)
            out += [self.tokenizer.decode(r, skip_special_tokens=True).strip() for r in rows]
        return out


@dataclass(frozen=True)
class InversionConfig:
    steps: int = 150
    batch_size: int = 16
    lr: float = 1e-3
    prefix_len: int = 8
    max_length: int = 32
    seed: int = 0
    eval_every: int = 0  # with dev texts: their word F1 every this many steps (a learning curve)


def _targets(tokenizer, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [token_ids(tokenizer, t)[:max_length] + [tokenizer.eos_token_id] for t in texts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def train_inverter(inverter: Inverter, texts: list[str], embeddings: np.ndarray, cfg: InversionConfig,
                   show_progress: bool = True, dev: tuple[list[str], np.ndarray] | None = None) -> TrainResult:
    """Teach ``inverter`` to write ``texts[i]`` from ``embeddings[i]``. With ``dev`` (texts and their
    embeddings, none of them trained on) and ``cfg.eval_every``, the curve holds the mean word F1 of
    what it writes from the dev vectors ("dev word F1", a fraction; each text's under "dev word F1 per
    text"). The rate stays flat after warmup, so a curve that flattens means the decoder stopped
    learning, not that its rate ran out. With a curve, the decoder is handed back as it was at its best
    dev point (the dev texts are never attacked): at a flat rate a run can end in a dip, and an attack
    read from the dip would underrate what the vectors leak."""
    if len(texts) != len(embeddings) or len(texts) < 2:
        raise ValueError("need one embedding per text, and at least two texts")
    vectors = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
    rng = np.random.default_rng(cfg.seed)
    order = np.concatenate([rng.permutation(len(texts)) for _ in range(cfg.steps * cfg.batch_size // len(texts) + 1)])

    def batch_at(step: int):
        idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        ids, mask = _targets(inverter.tokenizer, [texts[i] for i in idx], cfg.max_length)
        return vectors[idx], ids, mask

    best: dict = {"f1": -1.0, "state": None}

    def evaluate(step: int) -> dict:
        dev_texts, dev_vectors = dev
        written = inverter.generate(torch.as_tensor(np.asarray(dev_vectors)), cfg.max_length)
        f1 = [set_scores(words(w), words(t))["f1"] for w, t in zip(written, dev_texts)]
        if np.mean(f1) > best["f1"]:
            best.update(f1=float(np.mean(f1)), state={k: v.detach().clone() for k, v in inverter.state_dict().items()})
        return {"dev word F1": float(np.mean(f1)), "dev word F1 per text": f1}

    curve = bool(dev and cfg.eval_every)
    result = train(inverter, lambda b: inverter(*b), batch_at,
                   TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=max(1, cfg.steps // 10), seed=cfg.seed,
                               show_progress=show_progress, schedule="constant",
                               eval_every=cfg.eval_every if curve else 0),
                   evaluate=evaluate if curve else None)
    if best["state"] is not None:
        inverter.load_state_dict(best["state"])
    return result


def add_noise(embeddings: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    """Unit-normalised embeddings plus isotropic Gaussian noise of standard deviation ``scale`` per
    coordinate (so ``scale * sqrt(d)`` is the expected noise norm against a signal of norm 1)."""
    if scale < 0:
        raise ValueError(f"noise scale must be >= 0, got {scale}")
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    return (e + np.random.default_rng(seed).normal(0.0, scale, e.shape)).astype(np.float32)


def token_f1(tokenizer, hypothesis: str, reference: str) -> float:
    """Bag-of-tokens F1 (vec2text's token F1): overlap counted with multiplicity."""
    from collections import Counter

    hyp, ref = Counter(token_ids(tokenizer, hypothesis)), Counter(token_ids(tokenizer, reference))
    overlap = sum((hyp & ref).values())
    if not overlap:
        return 0.0
    p, r = overlap / sum(hyp.values()), overlap / sum(ref.values())
    return 2 * p * r / (p + r)


# Two attacks that need no decoder: what a vector gives away before any text is generated.

@dataclass(frozen=True)
class ProbeConfig:
    hidden: int = 0  # 0: a linear probe; > 0: one hidden layer of this width
    epochs: int = 500  # at most: training keeps the epoch with the lowest held-out loss
    lr: float = 0.1
    weight_decay: float = 1e-4
    min_count: int = 2  # words seen fewer times in the attacker's texts are not in the probe's vocabulary
    held_out: float = 0.1  # share of the attacker's texts that stops training and picks the threshold
    seed: int = 0


class BagOfWordsProbe:
    """A map from an embedding to the set of words in its text (Song & Raghunathan's attack on
    sentence embeddings): one logistic output per vocabulary word, trained on the attacker's own
    (text, embedding) pairs, and a single threshold picked to maximise F1 on held-out pairs.

    The inputs are standardised per coordinate (with the attacker's own statistics): an LLM's pooled
    vectors sit in a narrow cone, so the variation that tells texts apart is a small part of each raw
    coordinate, and an unscaled probe would learn it slowly. Training stops where the held-out loss
    is lowest (``held_out_f1`` and ``epochs_kept`` say how it ended), so a probe is neither cut short
    nor overfit by a fixed epoch count."""

    def __init__(self, cfg: ProbeConfig = ProbeConfig()) -> None:
        self.cfg = cfg

    def fit(self, texts: Sequence[str], embeddings: np.ndarray) -> "BagOfWordsProbe":
        from collections import Counter

        if len(texts) != len(embeddings) or len(texts) < 10:
            raise ValueError("need one embedding per text, and at least ten texts")
        cfg = self.cfg
        bags = [words(t) for t in texts]
        counts = Counter(w for bag in bags for w in bag)
        self.vocab = sorted(w for w, c in counts.items() if c >= cfg.min_count)
        if not self.vocab:
            raise ValueError(f"no word occurs {cfg.min_count} times in the attacker's texts")
        index = {w: i for i, w in enumerate(self.vocab)}
        y = torch.zeros(len(texts), len(self.vocab))
        for row, bag in enumerate(bags):
            y[row, [index[w] for w in bag if w in index]] = 1.0
        order = np.random.default_rng(cfg.seed).permutation(len(texts))
        n_held = max(1, int(cfg.held_out * len(texts)))
        held, fit = order[:n_held], order[n_held:]
        unit = _unit(embeddings)
        self.center, self.spread = unit[fit].mean(0), unit[fit].std(0) + 1e-6
        x = self._features(embeddings)
        torch.manual_seed(cfg.seed)
        dim = x.shape[1]
        self.model = (nn.Linear(dim, len(self.vocab)) if not cfg.hidden else
                      nn.Sequential(nn.Linear(dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, len(self.vocab))))
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, self.epochs_kept, state = float("inf"), 0, None
        for epoch in range(1, cfg.epochs + 1):  # full batch: a few thousand texts fit at once
            self.model.train()
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(self.model(x[fit]), y[fit]).backward()
            opt.step()
            with torch.no_grad():  # a tenth of a training step's work: looked at every epoch
                self.model.eval()
                loss = float(F.binary_cross_entropy_with_logits(self.model(x[held]), y[held]))
            if loss < best:
                best, self.epochs_kept = loss, epoch
                state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(state)
        probs = self._probs(x[held])
        true = [bags[i] for i in held]
        f1_at = {t: np.mean([set_scores(g, b)["f1"] for g, b in zip(self._words(probs, t), true)])
                 for t in np.linspace(0.05, 0.95, 19)}
        self.threshold = max(f1_at, key=f1_at.get)
        self.held_out_f1 = float(f1_at[self.threshold])
        return self

    def _features(self, embeddings: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((_unit(embeddings) - self.center) / self.spread)

    @torch.no_grad()
    def _probs(self, x: torch.Tensor) -> np.ndarray:
        self.model.eval()
        return torch.sigmoid(self.model(x)).numpy()

    def _words(self, probs: np.ndarray, threshold: float) -> list[set[str]]:
        return [{self.vocab[j] for j in np.flatnonzero(row >= threshold)} for row in probs]

    def predict(self, embeddings: np.ndarray) -> list[set[str]]:
        """The words each embedding's text is guessed to hold."""
        return self._words(self._probs(self._features(embeddings)), self.threshold)


# The probes an attacker tries: linear, and one hidden layer, each at its own rate. Rates picked on the
# medical dev texts (never attacked) at `cpu` scale: the linear probe still gained at 300 epochs of
# 1e-2 and matched 1000 of them at 0.1; the MLP overfits within a few epochs at 1e-2 and does best at 3e-3.
PROBES = (ProbeConfig(hidden=0, lr=0.1), ProbeConfig(hidden=256, lr=3e-3))


def best_probe(texts: Sequence[str], embeddings: np.ndarray, seed: int = 0,
               candidates: Sequence[ProbeConfig] = PROBES) -> BagOfWordsProbe:
    """The probe the attacker would use: of his candidates (a linear and an MLP probe), the one that
    recovers more words of his own held-out texts (he never sees a secret text, so the choice leaks
    nothing)."""
    probes = [BagOfWordsProbe(replace(cfg, seed=seed)).fit(texts, embeddings) for cfg in candidates]
    return max(probes, key=lambda p: p.held_out_f1)


def nearest_neighbour_inversion(embeddings: np.ndarray, public_texts: Sequence[str],
                                public_embeddings: np.ndarray) -> list[str]:
    """For each embedding, the text of the closest (cosine) embedding in a public corpus the attacker
    embedded himself: no training at all. It can only return texts it holds, so it recovers a
    secret text's words as far as a similar public text shares them."""
    if len(public_texts) != len(public_embeddings) or not len(public_texts):
        raise ValueError("need one embedding per public text, and at least one")
    best = (_unit(embeddings) @ _unit(public_embeddings).T).argmax(1)
    return [public_texts[i] for i in best]


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)
