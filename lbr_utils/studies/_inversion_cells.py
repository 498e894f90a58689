"""Chapter 7's computation, apart from its presentation: for one embedder and seed, four attacks and
retrieval at every noise scale, as one cached cell. Its own module so that the chapter's claims and
prose can change without invalidating the runs."""

from __future__ import annotations

import gc

import numpy as np
import torch

from ..data import load_domain
from ..embedders import LLMEmbedder, SentenceTransformerEmbedder
from ..evaluate import ranked_ndcg
from ..invert import (BagOfWordsProbe, InversionConfig, Inverter, ProbeConfig, add_noise, nearest_neighbour_inversion,
                      train_inverter)
from ..models import load_causal_lm
from ..profiles import Profile
from ..runcache import cache_key, cached_json, code_fingerprint
from ..text import set_scores, words

NOISE_SCALES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
EMBEDDERS = ("SmolLM2, mean pooling", "all-MiniLM-L6-v2")
ATTACKS = ("bag-of-words probe", "adaptive probe", "nearest neighbour", "decoder")
DECODER_EPOCHS = 3  # passes over the attacker's texts (the first version stopped at 80 steps, under one)
N_SECRET = 100  # evaluation texts attacked per seed
# Tokens the decoder writes: a medical answer card runs to 20-70 SmolLM2 tokens; 32 cut a third of the
# attacked cards short (capping the decoder's recall, not the probe's), 48 cuts one in 25.
DECODER_TOKENS = 48
N_DEV_TEXTS = 50  # dev texts the decoder's learning curve writes from (dev entities: never attacked, never trained)


def _entities(answer: str) -> tuple[str, str]:
    """(condition name, ICD-10-CM code) of a medical answer card."""
    name, rest = answer.split(" (ICD-10-CM ", 1)
    return name, rest.split(";")[0].rstrip(")")


def noisy_corpus_embedder(embed, corpus: list[str], scale: float, seed: int):
    """An embed function for retrieval in which the stored documents carry noise and queries do not."""
    stored = dict(zip(corpus, add_noise(embed(corpus), scale, seed)))

    def fn(texts: list[str]) -> np.ndarray:
        clean = add_noise(embed(texts), 0.0)
        return np.stack([stored.get(t, c) for t, c in zip(texts, clean)])
    return fn


def recovered(guesses: list[set[str]], texts: list[str]) -> dict[str, list[float]]:
    """Per secret text: word F1 of the guessed word set, and the share of its condition name's words
    recovered (the entity, as far as words go; its ICD code never occurs in a public text)."""
    f1 = [set_scores(g, words(t))["f1"] for g, t in zip(guesses, texts)]
    condition = [set_scores(g, words(_entities(t)[0]))["recall"] for g, t in zip(guesses, texts)]
    return {"word F1": f1, "condition words recovered": condition}


def _embedder(name: str, profile: Profile):
    if name == "all-MiniLM-L6-v2":
        return SentenceTransformerEmbedder(max_length=profile.max_length)
    model, tok = load_causal_lm(profile.model)
    return LLMEmbedder(model, tok, pooling="mean", max_length=profile.max_length, bf16=True)


def _cell(profile: Profile, domain: str, seed: int, name: str) -> dict[str, list]:
    splits = load_domain(domain, profile, seed)
    public = list(dict.fromkeys(r.answer for r in splits.gl + splits.cl))
    secret = list(dict.fromkeys(r.answer for r in splits.eval_records))[:N_SECRET]
    embed = _embedder(name, profile).embed  # caches by text: the noise sweep embeds the corpus once
    public_vecs, secret_vecs = embed(public), embed(secret)

    if domain != "medical":
        raise ValueError(f"chapter 7 scores medical answer cards (condition name, ICD code); got domain {domain!r}")
    if splits.dev is None:
        raise ValueError("chapter 7 picks its noise level on dev queries: the profile needs n_dev > 0")
    probe = BagOfWordsProbe(ProbeConfig(seed=seed)).fit(public, public_vecs)
    steps = max(1, DECODER_EPOCHS * len(public) // profile.batch_size)
    cfg = InversionConfig(steps=steps, batch_size=profile.batch_size, max_length=DECODER_TOKENS, seed=seed,
                          eval_every=max(1, steps // 6))
    decoder_model, decoder_tok = load_causal_lm(profile.model)
    inverter = Inverter(decoder_model, decoder_tok, public_vecs.shape[1], cfg.prefix_len)
    dev_texts = list(dict.fromkeys(r.answer for r in splits.dev_records))[:N_DEV_TEXTS]
    result = train_inverter(inverter, public, public_vecs, cfg, show_progress=True,
                            dev=(dev_texts, embed(dev_texts)) if dev_texts else None)
    inversion, retrieval = [], []
    for scale in NOISE_SCALES:
        noisy = add_noise(secret_vecs, scale, seed)
        # The adaptive attacker knows the noise: his probe learns from his own vectors noised alike.
        adaptive = probe if scale == 0 else BagOfWordsProbe(ProbeConfig(seed=seed)).fit(
            public, add_noise(public_vecs, scale, seed + 1))
        attacks = {"bag-of-words probe": probe.predict, "adaptive probe": adaptive.predict,
                   "nearest neighbour": lambda v: [words(t) for t in nearest_neighbour_inversion(v, public, public_vecs)],
                   "decoder": lambda v: [words(t) for t in inverter.generate(torch.as_tensor(v), cfg.max_length)]}
        for attack, guess in attacks.items():
            own, other = guess(noisy), guess(np.roll(noisy, 1, axis=0))  # other: the template floor
            inversion.append({"embedder": name, "attack": attack, "noise": scale, **recovered(own, secret),
                              **{f"{k}, floor": v for k, v in recovered(other, secret).items()},
                              "examples": [[t, " ".join(sorted(g))] for t, g in zip(secret[:3], own[:3])]})
        per_query = ranked_ndcg(noisy_corpus_embedder(embed, list(splits.eval.corpus.values()), scale, seed),
                                splits.eval)
        scores = [per_query[q] for q in splits.eval.qrels]
        # The dev queries pick the noise a practitioner could afford; the evaluation queries judge it.
        dev = ranked_ndcg(noisy_corpus_embedder(embed, list(splits.dev.corpus.values()), scale, seed), splits.dev)
        retrieval.append({"embedder": name, "noise": scale, "NDCG@10": float(np.mean(scores)), "per_query": scores,
                          "dev NDCG@10": float(np.mean(list(dev.values())))})
    training = [{"embedder": name, "steps": steps, "texts": len(public), **result.summary()}]
    del inverter, decoder_model
    gc.collect()  # the next cell's models load in this process: free this one's first
    return {"inversion": inversion, "retrieval": retrieval, "training": training}


def cell(profile: Profile, domain: str, seed: int, name: str) -> dict[str, list]:
    key = cache_key(code_fingerprint(__name__), profile=profile.to_dict(), domain=domain, seed=seed, name=name)
    return cached_json("ch07_cells", key, lambda: _cell(profile, domain, seed, name))
