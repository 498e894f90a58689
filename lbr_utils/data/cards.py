"""Data cards: where each domain's data comes from, under which license, how big, and an example."""

from __future__ import annotations

import platform

from ..profiles import Profile
from . import DOMAINS, domain_records, load_domain
from .sts import STS_NAMES, load_sts

SOURCES = {
    "chemistry": ("PyPI `drug-named-entity-recognition` (drug variant -> canonical drug, DrugBank/MedlinePlus "
                  "data) and `chemicals` (PubChem identifiers: common name, IUPAC name, formula, synonyms)",
                  "MIT (both packages); PubChem data is public domain"),
    "medical": ("PyPI `simple-icd-10-cm`: ICD-10-CM inclusion terms -> code description, parent code as context",
                "MIT (package); ICD-10-CM is a US government work in the public domain"),
    "code": (f"the Python {platform.python_version()} standard library: docstring summary -> function code "
             "(docstring removed), parsed with `ast`", "PSF License"),
    "lee": ("gensim test data: Lee, Pincombe & Welsh (2005) 50 news documents, all 1,225 pairs scored by humans",
            "LGPL-2.1 (gensim)"),
    "wordsim353": ("gensim test data: WordSimilarity-353 (Finkelstein et al., 2002)", "LGPL-2.1 (gensim)"),
    "simlex999": ("gensim test data: SimLex-999 (Hill, Reichart & Korhonen, 2015)", "LGPL-2.1 (gensim)"),
}


def domain_card(domain: str, profile: Profile, seed: int = 0) -> dict:
    """A domain's card: source, license, record/entity counts, split sizes and one evaluation example."""
    records = domain_records(domain)
    splits = load_domain(domain, profile, seed)
    example = splits.eval_records[0]
    source, license_ = SOURCES[domain]
    return {"domain": domain, "source": source, "license": license_, "records": len(records),
            "entities": len({r.entity for r in records}), **splits.sizes(),
            "example_query": example.question, "example_answer": example.answer}


def sts_card(name: str, profile: Profile, seed: int = 0) -> dict:
    data = load_sts(name, profile.n_sts, seed)
    a, b, score = data.pairs[0]
    source, license_ = SOURCES[name]
    return {"domain": name, "source": source, "license": license_, "pairs": len(data),
            "example_query": a[:120], "example_answer": f"{b[:120]} (human score {score:g})"}


def all_cards(profile: Profile, seed: int = 0) -> list[dict]:
    return [domain_card(d, profile, seed) for d in DOMAINS] + [sts_card(n, profile, seed) for n in STS_NAMES]
