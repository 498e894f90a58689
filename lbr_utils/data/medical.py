"""Medical: ICD-10-CM inclusion terms -> the condition (code) they belong to.

`simple-icd-10-cm` ships the 2025 ICD-10-CM release: 98k codes with descriptions, 12.6k inclusion
terms (the other names a clinician writes for a condition, e.g. "Asthma NOS" under J45.909) and the
code hierarchy. The parent code is the record's ``group``: its siblings are natural hard negatives.
"""

from __future__ import annotations

from functools import lru_cache

from .records import QARecord


@lru_cache(maxsize=1)
def medical_records() -> tuple[QARecord, ...]:
    """All medical QA records: one per (inclusion term, code)."""
    try:
        import simple_icd_10_cm as icd
    except ModuleNotFoundError as e:  # pragma: no cover - exercised only without the package
        raise ModuleNotFoundError("the medical domain needs ICD-10-CM data: pip install simple-icd-10-cm") from e
    out = []
    for code in icd.get_all_codes(with_dots=True):
        terms = icd.get_inclusion_term(code)
        if not terms or icd.is_chapter_or_block(code):
            continue
        parent = icd.get_parent(code)
        description = icd.get_description(code)
        context = f"; {icd.get_description(parent)}" if parent and not icd.is_chapter_or_block(parent) else ""
        answer = f"{description} (ICD-10-CM {code}{context})"
        for i, term in enumerate(terms):
            out.append(QARecord(id=f"med-{code}-{i}", domain="medical", question=term, answer=answer,
                                entity=code, group=parent or code))
    return tuple(out)
