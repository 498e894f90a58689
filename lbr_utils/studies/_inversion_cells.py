"""Chapter 7's computation, apart from its presentation: for one embedder and seed, four attacks and
retrieval at every noise scale, as one cached cell. Its own module so that the chapter's claims and
prose can change without invalidating the runs."""

from __future__ import annotations

import gc

import numpy as np
import torch

from ..data import RetrievalSet, load_domain
from ..embedders import LLMEmbedder, SentenceTransformerEmbedder
from ..evaluate import ranked_ndcg
from ..invert import (BagOfWordsProbe, InversionConfig, Inverter, add_noise, best_probe, nearest_neighbour_inversion,
                      train_inverter)
from ..models import load_causal_lm
from ..profiles import Profile
from ..runcache import cache_key, cached_json, code_fingerprint
from ..text import set_scores, words

# Fine steps where a 2-point retrieval budget falls (an earlier run: SmolLM2 lost 2 points by 0.01, MiniLM
# by 0.05), coarse ones beyond, where only the leak's end is of interest.
NOISE_SCALES = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1)
EMBEDDERS = ("SmolLM2, mean pooling", "all-MiniLM-L6-v2")
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


def stored_vectors(embed, corpus: list[str], scale: float, seed: int) -> dict[str, np.ndarray]:
    """The stored documents' vectors under noise ``scale``: what retrieval searches, and what leaks
    (the attacker reads these very vectors, not another draw of the noise)."""
    return dict(zip(corpus, add_noise(embed(corpus), scale, seed)))


def noisy_corpus_embedder(embed, stored: dict[str, np.ndarray]):
    """An embed function for retrieval in which the stored documents carry their noise (``stored``)
    and queries do not."""
    def fn(texts: list[str]) -> np.ndarray:
        clean = add_noise(embed(texts), 0.0)
        return np.stack([stored.get(t, c) for t, c in zip(texts, clean)])
    return fn


def recovered(guesses: list[set[str]], texts: list[str]) -> dict[str, list[float]]:
    """Per secret text: precision, recall and F1 of the guessed word set, the share of its condition
    name's words recovered, and whether its ICD-10-CM code is among the guessed words (1 or 0): the
    entity, as far as words go, and exactly."""
    scores = [set_scores(g, words(t)) for g, t in zip(guesses, texts)]
    entities = [_entities(t) for t in texts]
    return {"word F1": [s["f1"] for s in scores], "word precision": [s["precision"] for s in scores],
            "word recall": [s["recall"] for s in scores],
            "condition words recovered": [set_scores(g, words(name))["recall"] for g, (name, _) in zip(guesses, entities)],
            "ICD code recovered": [float(code.lower() in g) for g, (_, code) in zip(guesses, entities)]}


def dev_retrieval(splits) -> RetrievalSet:
    """The dev queries in a corpus as large as the evaluation one: their answers plus the whole
    distractor pool (no evaluation query or answer), so noise picked on dev costs what it will cost
    on the evaluation queries (a small corpus forgives noise that a large one does not)."""
    corpus = {**splits.dev.corpus, **{f"x-{r.entity}": r.answer for r in splits.distractor_records}}
    return RetrievalSet(splits.dev.queries, corpus, splits.dev.qrels)


def _embedder(name: str, profile: Profile):
    if name == "all-MiniLM-L6-v2":
        return SentenceTransformerEmbedder(max_length=profile.max_length)
    model, tok = load_causal_lm(profile.model)
    return LLMEmbedder(model, tok, pooling="mean", max_length=profile.max_length, bf16=True)


def _cell(profile: Profile, domain: str, seed: int, name: str) -> dict[str, list]:
    if domain != "medical":
        raise ValueError(f"chapter 7 scores medical answer cards (condition name, ICD code); got domain {domain!r}")
    splits = load_domain(domain, profile, seed)
    if splits.dev is None:
        raise ValueError("chapter 7 picks its noise level on dev queries: the profile needs n_dev > 0")
    public = list(dict.fromkeys(r.answer for r in splits.gl + splits.cl))
    secret = list(dict.fromkeys(r.answer for r in splits.eval_records))[:N_SECRET]
    embed = _embedder(name, profile).embed  # caches by text: the noise sweep embeds the corpus once
    public_vecs = embed(public)
    probe = best_probe(public, public_vecs, seed)
    steps = max(1, DECODER_EPOCHS * len(public) // profile.batch_size)
    cfg = InversionConfig(steps=steps, batch_size=profile.batch_size, max_length=DECODER_TOKENS, seed=seed,
                          eval_every=max(1, steps // 6))
    decoder_model, decoder_tok = load_causal_lm(profile.model)
    inverter = Inverter(decoder_model, decoder_tok, public_vecs.shape[1], cfg.prefix_len)
    dev_texts = list(dict.fromkeys(r.answer for r in splits.dev_records))[:N_DEV_TEXTS]
    result = train_inverter(inverter, public, public_vecs, cfg, show_progress=True,
                            dev=(dev_texts, embed(dev_texts)) if dev_texts else None)
    corpus, dev = list(splits.eval.corpus.values()), dev_retrieval(splits)
    if not set(secret) <= set(corpus):
        raise ValueError("the attacked texts must be stored documents of the evaluation corpus")
    inversion, retrieval, probes = [], [], []
    for scale in NOISE_SCALES:
        stored = stored_vectors(embed, corpus, scale, seed)
        noisy = np.stack([stored[t] for t in secret])
        # The adaptive attacker knows the noise: his probe (the kind he chose on clean vectors)
        # learns from his own vectors noised alike.
        adaptive = probe if scale == 0 else BagOfWordsProbe(probe.cfg).fit(public, add_noise(public_vecs, scale, seed + 1))
        probes.append({"embedder": name, "noise": scale, "hidden": adaptive.cfg.hidden, "lr": adaptive.cfg.lr,
                       "held-out word F1": adaptive.held_out_f1, "epochs kept": adaptive.epochs_kept,
                       "epochs at most": adaptive.cfg.epochs, "vocabulary": len(adaptive.vocab)})
        attacks = {"bag-of-words probe": probe.predict, "adaptive probe": adaptive.predict,
                   "nearest neighbour": lambda v: [words(t) for t in nearest_neighbour_inversion(v, public, public_vecs)],
                   "decoder": lambda v: [words(t) for t in inverter.generate(torch.as_tensor(v), cfg.max_length)]}
        for attack, guess in attacks.items():
            own = guess(noisy)
            # the template floor: each text scored against the guess from the previous text's vector
            # (every attack reads one vector at a time, so this is the attack run on np.roll(noisy, 1))
            other = own[-1:] + own[:-1]
            inversion.append({"embedder": name, "attack": attack, "noise": scale, **recovered(own, secret),
                              **{f"{k}, floor": v for k, v in recovered(other, secret).items()},
                              "guesses": [" ".join(sorted(g)) for g in own]})
        per_query = ranked_ndcg(noisy_corpus_embedder(embed, stored), splits.eval)
        scores = [per_query[q] for q in splits.eval.qrels]
        # The dev queries pick the noise a practitioner could afford; the evaluation queries judge it.
        dev_scores = ranked_ndcg(noisy_corpus_embedder(embed, stored_vectors(embed, list(dev.corpus.values()), scale,
                                                                             seed)), dev)
        retrieval.append({"embedder": name, "noise": scale, "NDCG@10": float(np.mean(scores)), "per_query": scores,
                          "dev NDCG@10": float(np.mean(list(dev_scores.values())))})
    training = [{"embedder": name, "steps": steps, "texts": len(public), **result.summary()}]
    del inverter, decoder_model
    gc.collect()  # the next cell's models load in this process: free this one's first
    return {"inversion": inversion, "retrieval": retrieval, "training": training, "probes": probes,
            "secrets": [{"embedder": name, "text": t} for t in secret]}  # the texts each row's guesses are of


def cell(profile: Profile, domain: str, seed: int, name: str) -> dict[str, list]:
    key = cache_key(code_fingerprint(__name__), profile=profile.to_dict(), domain=domain, seed=seed, name=name)
    return cached_json("ch07_cells", key, lambda: _cell(profile, domain, seed, name))
