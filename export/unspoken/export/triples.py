"""Reading (criterion, content, label) triples and splitting them by criterion.

Splits are grouped by criterion: a criterion's rows all land in one split, so the test split measures how a head does
on criteria it never saw. A row's explicit ``split`` field wins; otherwise a hash of the normalised criterion decides.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from unspoken.runtime.errors import InputError
from unspoken.runtime.jsonl import iter_jsonl

SPLITS = ("train", "validation", "test")


def criterion_split(criterion: str, validation: float = 0.15, test: float = 0.15) -> str:
    """Deterministic split for a criterion (case and surrounding space ignored)."""
    key = " ".join(criterion.lower().split())
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    if bucket < test:
        return "test"
    if bucket < test + validation:
        return "validation"
    return "train"


def load_triples(path: str | Path) -> list[dict]:
    """Rows with at least content, criterion and a 0/1 label; adds ``split`` where missing."""
    path = Path(path)
    rows = []
    for n, row in iter_jsonl(path):
        for key in ("content", "criterion"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise InputError(f"{path}:{n}: field {key!r} must be a non-empty string")
        if row.get("label") not in (0, 1, True, False):
            raise InputError(f"{path}:{n}: field 'label' must be 0 or 1, got {row.get('label')!r}")
        row["label"] = int(row["label"])
        split = row.get("split") or criterion_split(row["criterion"])
        if split not in SPLITS:
            raise InputError(f"{path}:{n}: split {split!r} is not one of {', '.join(SPLITS)}")
        row["split"] = split
        rows.append(row)
    if not rows:
        raise InputError(f"triples file {path} holds no rows")
    return rows
