"""Domain data in the paper's unified QA format, split three ways, plus STS sets.

``load_domain("medical", profile)`` gives generative / contrastive / evaluation splits whose entities
are disjoint (see :mod:`records`); ``load_sts("lee")`` gives human-scored pairs.
"""

from __future__ import annotations

from typing import Callable

from ..profiles import Profile
from .chemistry import chemistry_records
from .code import code_records
from .medical import medical_records
from .records import DomainSplits, QARecord, RetrievalSet, deduplicate, leakage, split_by_entity
from .sts import STS_NAMES, STSSet, load_sts

DOMAINS: dict[str, Callable[[], tuple[QARecord, ...]]] = {
    "chemistry": chemistry_records,
    "medical": medical_records,
    "code": code_records,
}


def domain_records(domain: str) -> list[QARecord]:
    """All deduplicated records of a domain, before splitting."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    return deduplicate(DOMAINS[domain]())


# The unit a split keeps whole: code is split by module (a function's neighbours in its module would
# otherwise teach the evaluation answer), the other domains by entity.
SPLIT_UNITS = {"code": "group"}


def load_domain(domain: str, profile: Profile, seed: int = 0) -> DomainSplits:
    """The disjoint splits of ``domain`` (GL, CL, dev, evaluation, distractor pool), sized by
    ``profile`` and shuffled by ``seed``."""
    sized = profile.for_domain(domain)
    return split_by_entity(domain_records(domain), sized.n_gl, sized.n_cl, sized.n_eval, sized.n_distractors, seed,
                           n_dev=sized.n_dev, unit=SPLIT_UNITS.get(domain, "entity"))


__all__ = ["DOMAINS", "STS_NAMES", "DomainSplits", "QARecord", "RetrievalSet", "STSSet", "deduplicate",
           "domain_records", "leakage", "load_domain", "load_sts", "split_by_entity"]
