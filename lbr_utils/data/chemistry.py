"""Chemistry: drug and compound names -> the compound they name.

Two sources that ship offline: `drug-named-entity-recognition` (brand and variant names of ~20k
drugs with DrugBank/MedlinePlus data) and `chemicals` (PubChem identifiers: common name, IUPAC name,
formula, synonyms). A query is a name a chemist might type ("acetylsalicylic acid", "Ziagen"); the
answer is a short card of the compound it names. Matching them takes knowledge, not string overlap.
"""

from __future__ import annotations

import bz2
import csv
import pickle
import re
from functools import lru_cache

from ._paths import package_dir
from .records import QARecord

_CAS = re.compile(r"^\d{2,7}-\d{2}-\d$")
_CATALOG_ID = re.compile(r"^[a-z]{1,6}[- ]?\d[\d-]*$|\bno\.|\d{4,}")  # stk366316, nsc-1234, caswell no. 050a


def _good_name(name: str) -> bool:
    letters = sum(c.isalpha() for c in name)
    return 4 <= len(name) <= 60 and letters >= 4 and not _CAS.match(name) and not _CATALOG_ID.match(name)


def _drug_records() -> list[QARecord]:
    path = package_dir("drug_named_entity_recognition", "drug-named-entity-recognition") / "drug_ner_dictionary.pkl.bz2"
    with bz2.open(path) as f:
        d = pickle.load(f)
    out = []
    for variant, canonicals in sorted(d["drug_variant_to_canonical"].items()):
        if len(canonicals) != 1 or variant == canonicals[0] or not _good_name(variant):
            continue
        data = d["drug_canonical_to_data"].get(canonicals[0], {})
        name = data.get("name", canonicals[0])
        card = f"{name}: a drug" + (f" with molecular formula {data['formula']}" if data.get("formula") else "") + "."
        out.append(QARecord(id=f"chem-drug-{len(out)}", domain="chemistry", question=variant,
                            answer=card, entity=canonicals[0].lower(), group="drug"))
    return out


def _pubchem_records(max_synonyms: int = 4) -> list[QARecord]:
    path = package_dir("chemicals") / "Identifiers" / "chemical identifiers pubchem large.tsv"
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) < 10:
                continue
            cid, formula, iupac, common, synonyms = row[0], row[2], row[7], row[8], row[9:]
            if not _good_name(common) or common.lower() == iupac.lower():
                continue
            card = f"{common}: molecular formula {formula}; IUPAC name {iupac}."
            taken: set[str] = {common.lower(), iupac.lower()}
            for syn in synonyms:
                key = re.sub(r"[^a-z0-9]", "", syn.lower())
                if not _good_name(syn) or syn.lower() in taken or key in {re.sub(r"[^a-z0-9]", "", t) for t in taken}:
                    continue
                taken.add(syn.lower())
                out.append(QARecord(id=f"chem-cid{cid}-{len(taken)}", domain="chemistry", question=syn,
                                    answer=card, entity=common.lower(), group=formula))
                if len(taken) - 2 >= max_synonyms:
                    break
    return out


@lru_cache(maxsize=1)
def chemistry_records() -> tuple[QARecord, ...]:
    """All chemistry QA records (before deduplication and splitting)."""
    return tuple(_drug_records() + _pubchem_records())
