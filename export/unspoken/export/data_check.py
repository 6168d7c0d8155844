"""Validate a training-triples file: schema, balance, minimal pairs, criterion-grouped splits, uniqueness.

Used by ``unspoken data check FILE`` and by the test suite on the committed set. Problems come back as readable lines
naming the row; thresholds are the project's data requirements.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from unspoken.runtime.jsonl import iter_jsonl

REQUIRED = {"id": str, "family": str, "criterion": str, "content": str, "label": int, "verdict": str, "split": str}
SPLITS = ("train", "validation", "test")


@dataclass
class Requirements:
    min_rows: int = 4000
    min_criteria: int = 400
    min_families: int = 14
    min_pair_fraction: float = 0.30
    balance: tuple[float, float] = (0.45, 0.55)
    near_duplicate_jaccard: float = 0.9  # word 3-gram Jaccard above this between non-partner rows is flagged


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Lower-cased word n-grams; a text shorter than n words gives its words as one gram."""
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def read_rows(path: Path, report: Report) -> list[dict]:
    rows = []
    for n, row in iter_jsonl(path, on_error=lambda n, msg: report.errors.append(f"line {n}: {msg}")):
        problems = []
        for key, typ in REQUIRED.items():
            if not isinstance(row.get(key), typ) or (typ is str and not row[key].strip()):
                problems.append(f"{key} must be a non-empty {typ.__name__}")
        if "pair" not in row or not (row["pair"] is None or isinstance(row["pair"], str)):
            problems.append("pair must be an id or null")
        if isinstance(row.get("label"), int) and row["label"] not in (0, 1):
            problems.append("label must be 0 or 1")
        if isinstance(row.get("verdict"), str) and not row["verdict"].startswith("ASSESSMENT:"):
            problems.append("verdict must start with 'ASSESSMENT:'")
        if isinstance(row.get("split"), str) and row["split"] not in SPLITS:
            problems.append(f"split must be one of {', '.join(SPLITS)}")
        if problems:
            report.errors.append(f"line {n} (id {row.get('id')!r}): " + "; ".join(problems))
            continue
        row["_line"] = n
        rows.append(row)
    return rows


def check_rows(rows: list[dict], req: Requirements, report: Report) -> None:
    lo, hi = req.balance
    by_id = {}
    for r in rows:
        if r["id"] in by_id:
            report.errors.append(f"line {r['_line']}: duplicate id {r['id']!r}")
        by_id[r["id"]] = r
    seen = {}
    for r in rows:
        key = (_norm(r["criterion"]), r["content"].strip())  # case matters in content (format criteria)
        if key in seen:
            report.errors.append(f"line {r['_line']}: same criterion and content as line {seen[key]}")
        seen[key] = r["_line"]
    paired = 0
    for r in rows:
        if r["pair"] is None:
            continue
        p = by_id.get(r["pair"])
        where = f"line {r['_line']} (id {r['id']})"
        if p is None:
            report.errors.append(f"{where}: pair {r['pair']!r} does not exist")
        elif p["pair"] != r["id"]:
            report.errors.append(f"{where}: pair {p['id']} does not point back")
        elif p["criterion"] != r["criterion"] or p["label"] == r["label"]:
            report.errors.append(f"{where}: pair {p['id']} must share the criterion and have the opposite label")
        else:
            paired += 1
    split_of = defaultdict(set)
    for r in rows:
        split_of[_norm(r["criterion"])].add(r["split"])
    for crit, splits in split_of.items():
        if len(splits) > 1:
            report.errors.append(f"criterion {crit[:60]!r} appears in several splits: {sorted(splits)}")
    families = Counter(r["family"] for r in rows)
    pos = sum(r["label"] for r in rows) / max(len(rows), 1)
    if not lo <= pos <= hi:
        report.errors.append(f"overall positive rate {pos:.3f} is outside [{lo}, {hi}]")
    for fam, n in sorted(families.items()):
        p = sum(r["label"] for r in rows if r["family"] == fam) / n
        if not lo <= p <= hi:
            report.errors.append(f"family {fam}: positive rate {p:.3f} is outside [{lo}, {hi}]")
    if len(rows) < req.min_rows:
        report.errors.append(f"{len(rows)} rows; at least {req.min_rows} are required")
    if len(split_of) < req.min_criteria:
        report.errors.append(f"{len(split_of)} distinct criteria; at least {req.min_criteria} are required")
    if len(families) < req.min_families:
        report.errors.append(f"{len(families)} families; at least {req.min_families} are required")
    pair_fraction = paired / max(len(rows), 1)
    if pair_fraction < req.min_pair_fraction:
        report.errors.append(f"{pair_fraction:.1%} of rows are in minimal pairs; at least {req.min_pair_fraction:.0%}")
    near = _near_duplicates(rows, req.near_duplicate_jaccard)
    for a, b, j in near:
        report.errors.append(f"lines {a['_line']} and {b['_line']}: near-duplicate rows (content Jaccard {j:.2f}, "
                             "same criterion, not a minimal pair)")
    report.stats = {
        "rows": len(rows),
        "families": dict(sorted(families.items())),
        "distinct_criteria": len(split_of),
        "positive_rate": round(pos, 4),
        "pair_fraction": round(pair_fraction, 4),
        "rows_per_split": dict(Counter(r["split"] for r in rows)),
        "criteria_per_split": dict(Counter(next(iter(s)) for s in split_of.values() if len(s) == 1)),
        "test_criteria_in_train": sum(1 for s in split_of.values() if {"test", "train"} <= s),
        "contents_with_several_criteria": sum(1 for n in Counter(r["content"].strip() for r in rows).values() if n > 1),
    }


def _near_duplicates(rows: list[dict], threshold: float) -> list[tuple[dict, dict, float]]:
    """Rows with the same criterion whose contents nearly coincide, unless they are declared partners."""
    by_crit = defaultdict(list)
    for r in rows:
        by_crit[_norm(r["criterion"])].append(r)
    found = []
    for group in by_crit.values():
        sh = [(r, _ngrams(r["content"], 3)) for r in group]
        for i in range(len(sh)):
            for j in range(i + 1, len(sh)):
                a, sa = sh[i]
                b, sb = sh[j]
                if a["pair"] == b["id"] or a["label"] != b["label"]:
                    continue  # partners and opposite labels are deliberate contrasts
                jac = len(sa & sb) / max(len(sa | sb), 1)
                if jac >= threshold:
                    found.append((a, b, jac))
    return found


def check_file(path: str | Path, req: Requirements | None = None) -> Report:
    report = Report()
    path = Path(path)
    if not path.is_file():
        report.errors.append(f"{path} does not exist")
        return report
    rows = read_rows(path, report)
    check_rows(rows, req or Requirements(), report)
    return report


def eval_overlap(path: str | Path, eval_dir: str | Path, n: int = 8) -> dict:
    """How much of our content shares word n-grams with public evaluation sets (leakage check; report only)."""
    eval_grams: set[tuple[str, ...]] = set()
    eval_contents: set[str] = set()
    for file in sorted(Path(eval_dir).glob("*.jsonl")):
        for _, row in iter_jsonl(file, on_error=lambda n, msg: None):
            content = str(row.get("content", ""))
            eval_contents.add(_norm(content))
            eval_grams |= _ngrams(content, n)
    hits, exact, worst = [], 0, 0.0
    rows = [row for _, row in iter_jsonl(path)]
    for r in rows:
        grams = _ngrams(r["content"], n)
        if _norm(r["content"]) in eval_contents:
            exact += 1
        shared = len(grams & eval_grams) / len(grams)
        worst = max(worst, shared)
        if shared:
            hits.append(r["id"])
    return {"ngram": n, "rows": len(rows), "rows_sharing_any_ngram": len(hits), "exact_content_matches": exact,
            "max_fraction_of_row_ngrams_shared": round(worst, 4), "example_ids": hits[:10]}
