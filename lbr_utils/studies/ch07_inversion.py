"""Chapter 7's experiment: how much text do stored embeddings give away, and what does noise cost?

Threat model: an attacker holds leaked document embeddings and can query the same embedder, so he
can embed any text of the domain himself: the training-split answers are his "public" texts. Three
attacks read the evaluation-split texts' vectors (entities no public text mentions): a bag-of-words
probe (vector -> the words of its text), nearest-neighbour inversion (the closest public text), and a
trained decoder (vector -> soft prefix -> SmolLM2 writes the text). Each is scored in words of the
secret text recovered (F1), against its own floor: the same attack on *another* text's vector, which
is what the domain's shared template gives without any leak. The defence adds Gaussian noise to the
stored vectors; the same noisy vectors are scored for retrieval. Each (embedder, seed) is a cached cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..data import load_domain
from ..embedders import LLMEmbedder, SentenceTransformerEmbedder
from ..evaluate import ranked_ndcg
from ..invert import (BagOfWordsProbe, InversionConfig, Inverter, ProbeConfig, add_noise, nearest_neighbour_inversion,
                      train_inverter)
from ..models import load_causal_lm
from ..profiles import Profile, get_profile
from ..results import load_tables, save_results, timer
from ..runcache import cache_key, cached_json, code_fingerprint
from ..stats import claim_family, display_claims, judged_claim
from ..text import set_scores, words

NAME = __name__.rpartition(".")[2]
TITLE = "Embedding inversion (chapter 7)"
NOISE_SCALES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
EMBEDDERS = ("SmolLM2, mean pooling", "all-MiniLM-L6-v2")
ATTACKS = ("bag-of-words probe", "nearest neighbour", "decoder")
DECODER_EPOCHS = 3  # passes over the attacker's texts (the first version stopped at 80 steps, under one)
UTILITY_LOSS = 2.0  # NDCG@10 points a practitioner would give up for privacy
N_SECRET = 100  # evaluation texts attacked per seed


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

    probe = BagOfWordsProbe(ProbeConfig(seed=seed)).fit(public, public_vecs)
    steps = max(1, DECODER_EPOCHS * len(public) // profile.batch_size)
    cfg = InversionConfig(steps=steps, batch_size=profile.batch_size, seed=seed)
    decoder_model, decoder_tok = load_causal_lm(profile.model)
    inverter = Inverter(decoder_model, decoder_tok, public_vecs.shape[1], cfg.prefix_len)
    result = train_inverter(inverter, public, public_vecs, cfg, show_progress=True)
    attacks = {"bag-of-words probe": probe.predict,
               "nearest neighbour": lambda v: [words(t) for t in nearest_neighbour_inversion(v, public, public_vecs)],
               "decoder": lambda v: [words(t) for t in inverter.generate(torch.as_tensor(v), cfg.max_length)]}
    inversion, retrieval = [], []
    for scale in NOISE_SCALES:
        noisy = add_noise(secret_vecs, scale, seed)
        for attack, guess in attacks.items():
            own, other = guess(noisy), guess(np.roll(noisy, 1, axis=0))  # other: the template floor
            inversion.append({"embedder": name, "attack": attack, "noise": scale, **recovered(own, secret),
                              **{f"{k}, floor": v for k, v in recovered(other, secret).items()},
                              "examples": [[t, " ".join(sorted(g))] for t, g in zip(secret[:3], own[:3])]})
        per_query = ranked_ndcg(noisy_corpus_embedder(embed, list(splits.eval.corpus.values()), scale, seed),
                                splits.eval)
        scores = [per_query[q] for q in splits.eval.qrels]
        retrieval.append({"embedder": name, "noise": scale, "NDCG@10": float(np.mean(scores)), "per_query": scores})
    training = [{"embedder": name, "steps": steps, "texts": len(public), **result.summary()}]
    return {"inversion": inversion, "retrieval": retrieval, "training": training}


def cell(profile: Profile, domain: str, seed: int, name: str) -> dict[str, list]:
    key = cache_key(code_fingerprint(__name__), profile=profile.to_dict(), domain=domain, seed=seed, name=name)
    return cached_json("ch07_cells", key, lambda: _cell(profile, domain, seed, name))


def run(profile_name: str, domain: str = "medical", seeds: tuple[int, ...] | None = None) -> dict[str, pd.DataFrame]:
    """Every embedder on every seed: three attacks and retrieval at each noise scale."""
    profile = get_profile(profile_name)
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    out: dict[str, list] = {}
    with timer() as t:
        for seed in seeds:
            for name in EMBEDDERS:
                for table, rows in cell(profile, domain, seed, name).items():
                    out.setdefault(table, []).extend(dict(row, seed=seed) for row in rows)
    config = {"profile": profile.to_dict(), "domain": domain, "noise_scales": NOISE_SCALES, "embedders": EMBEDDERS,
              "decoder": {"epochs": DECODER_EPOCHS, **InversionConfig(batch_size=profile.batch_size).__dict__},
              "probe": ProbeConfig().__dict__, "utility_loss": UTILITY_LOSS, "secret_texts": N_SECRET}
    save_results(NAME, profile_name, out, config, list(seeds), t["seconds"])
    return {k: pd.DataFrame(v) for k, v in out.items()}


def leak(inversion: pd.DataFrame, metric: str = "word F1") -> pd.DataFrame:
    """Per (embedder, attack, noise, seed): the per-text leak, ``metric`` from the text's own vector
    minus from another text's (the template floor)."""
    return inversion.assign(per_query=[list(np.subtract(a, b)) for a, b in
                                       zip(inversion[metric], inversion[f"{metric}, floor"])])


def privacy_utility(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The curve a practitioner picks a noise level from: per embedder, attack and noise scale, the
    leak (word F1 points above the floor, mean over seeds and texts) and retrieval NDCG@10 (x100)."""
    leaks = leak(tables["inversion"])
    leaks = leaks.assign(leak=leaks.per_query.map(np.mean) * 100)
    curve = leaks.groupby(["embedder", "attack", "noise"], sort=False).leak.agg(["mean", "std"]).reset_index()
    ndcg = (tables["retrieval"].groupby(["embedder", "noise"])["NDCG@10"].mean() * 100).rename("NDCG@10")
    return curve.merge(ndcg.reset_index(), on=["embedder", "noise"])


def usable_noise(retrieval: pd.DataFrame, loss: float = UTILITY_LOSS) -> dict[str, float]:
    """Per embedder: the largest noise scale whose mean NDCG@10 is at most ``loss`` points below the
    clean one (0 when even the smallest costs more)."""
    mean = retrieval.groupby(["embedder", "noise"])["NDCG@10"].mean() * 100
    out = {}
    for name, g in mean.groupby(level=0):
        g = g.droplevel(0)
        out[name] = float(max(s for s, v in g.items() if g[0.0] - v <= loss))
    return out


def _by_seed(rows: pd.DataFrame, values) -> dict[int, np.ndarray]:
    return {int(r.seed): np.asarray(values(r), dtype=float) for r in rows.itertuples()}


def survey_claims(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One Holm family: does each attack recover more than the template from each embedder's clean
    vectors, and does the noise a practitioner could afford (at most ``UTILITY_LOSS`` NDCG@10 points)
    halve the leak of the strongest attack? "Halve" per text: noisy leak - clean leak / 2 < 0."""
    leaks = leak(tables["inversion"])
    noise = usable_noise(tables["retrieval"])
    rows = []
    for name in leaks.embedder.unique():
        clean = leaks[(leaks.embedder == name) & (leaks.noise == 0)]
        for attack in clean.attack.unique():
            rows.append(judged_claim(f"stored embeddings leak their text: the {attack} recovers more words than the "
                                     "template", _by_seed(clean[clean.attack == attack], lambda r: r.per_query), +1,
                                     source="survey, embedding understanding", embedder=name))
        strongest = clean.assign(m=clean.per_query.map(np.mean)).groupby("attack").m.mean().idxmax()
        at = leaks[(leaks.embedder == name) & (leaks.attack == strongest)]
        clean_leak = _by_seed(at[at.noise == 0], lambda r: r.per_query)
        noisy = at[at.noise == noise[name]]
        rows.append(judged_claim(f"noise at {noise[name]:g} (at most {UTILITY_LOSS:g} NDCG@10 points lost) halves the "
                                 f"leak of the strongest attack ({strongest})",
                                 {s: v - clean_leak[s] / 2 for s, v in _by_seed(noisy, lambda r: r.per_query).items()},
                                 -1, source="practice: noise as a defence", embedder=name))
    return claim_family(rows)


def claims(records: dict[str, dict]) -> dict[str, pd.DataFrame]:
    if NAME not in records:
        return {}
    tables = load_tables(records[NAME])
    if "attack" not in tables["inversion"]:  # a results file from before the three attacks
        return {}
    return {"survey": display_claims(survey_claims(tables))}
