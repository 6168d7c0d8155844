"""The committed training triples pass the validator; the validator catches bad files; no leakage into eval sets."""

import json
from pathlib import Path

import pytest

from unspoken.export.data_check import Requirements, check_file, eval_overlap

ROOT = Path(__file__).resolve().parents[1]
TRIPLES = ROOT / "heads" / "data" / "triples.jsonl"
EVAL_DIR = ROOT.parent / "shared" / "eval"


def test_committed_triples_pass_the_validator():
    report = check_file(TRIPLES)
    assert report.ok, "\n".join(report.errors[:20])
    assert report.stats["rows"] >= 4000 and report.stats["distinct_criteria"] >= 400
    assert report.stats["test_criteria_in_train"] == 0


def _row(i, **kw):
    row = {"id": f"r{i}", "family": "f", "criterion": f"c{i}", "content": f"text {i}", "label": i % 2,
           "verdict": "ASSESSMENT: The criterion is met.", "pair": None, "split": "train"}
    row.update(kw)
    return row


@pytest.mark.parametrize("bad,message", [
    ({"label": 2}, "label must be 0 or 1"),
    ({"verdict": "yes"}, "verdict must start with 'ASSESSMENT:'"),
    ({"pair": "nope"}, "pair 'nope' does not exist"),
    ({"split": "dev"}, "split must be one of"),
    ({"criterion": "c1", "split": "test"}, "appears in several splits"),
    ({"content": "text 1", "criterion": "c1"}, "same criterion and content"),
])
def test_validator_names_the_bad_row(tmp_path, bad, message):
    rows = [_row(i) for i in range(6)]
    rows[3].update(bad)
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = check_file(f, Requirements(min_rows=1, min_criteria=1, min_families=1, min_pair_fraction=0,
                                        balance=(0.0, 1.0)))
    assert any(message in e for e in report.errors), report.errors


@pytest.mark.skipif(not EVAL_DIR.is_dir(), reason="../shared/eval is not beside this checkout")
def test_no_content_copied_from_public_eval_sets():
    overlap = eval_overlap(TRIPLES, EVAL_DIR, n=8)
    assert overlap["exact_content_matches"] == 0
    assert overlap["rows_sharing_any_ngram"] <= 0.005 * overlap["rows"]
