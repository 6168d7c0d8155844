"""The quality benchmark end to end on a tiny backbone: sampling, every baseline, metrics, table and plots."""

import json

import numpy as np
import pytest

from conftest import needs_export, write_toy_triples

pytestmark = needs_export


def _suite(path, n, name):
    rows = [{"content": f"text {i} {'good' if i % 3 else 'bad'}", "criterion": "It is good.", "label": int(i % 3 > 0)}
            for i in range(n)]
    file = path / f"{name}.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return file


def test_balanced_sample_is_deterministic_and_balanced(tmp_path):
    from unspoken.export.evaluate import load_suite

    file = _suite(tmp_path, 90, "s")
    a, = load_suite([file], per_set=20, seed=0)
    b, = load_suite([file], per_set=20, seed=0)
    c, = load_suite([file], per_set=20, seed=1)
    assert [r["content"] for r in a.rows] == [r["content"] for r in b.rows] != [r["content"] for r in c.rows]
    assert len(a.rows) == 20 and a.labels.sum() == 10


@pytest.mark.parametrize("text,expected", [("Yes, it is.", 1.0), (" no.", 0.0), ("I think so", None),
                                           ("Nope... actually yes", 1.0), ("Not sure. No.", 0.0)])
def test_judge_answer_parsing(text, expected):
    from unspoken.export.evaluate import parse_yes_no

    assert parse_yes_no(text) == expected


def test_eval_cli_runs_every_method_and_writes_the_report(tiny_dirs, tiny_bundles, tmp_path):
    from unspoken.runtime.cli import main

    triples = write_toy_triples(tmp_path / "t.jsonl", n=48)
    suite = [_suite(tmp_path, 12, "negation_nli"), _suite(tmp_path, 10, "topicish")]
    out = tmp_path / "eval"
    rc = main(["eval", "--suite", *map(str, suite), "--per-set", "8", "--triples", str(triples),
               "--bundle", f"tiny={tiny_bundles[('llama', 'content-first')]}", "--backbone", str(tiny_dirs["llama"]),
               "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "results.json").read_text())
    assert set(result["methods"]) == {"probe:tiny", "p_yes", "embedding", "judge"}
    assert result["structural_sets"] == ["negation_nli"]
    for m in result["methods"].values():
        for s in result["sets"]:
            assert 0.0 <= m["per_set"][s]["ece"] <= 1.0 and np.isfinite(m["per_set"][s]["brier"])
        assert np.isfinite(m["macro_public"]["brier"])
    assert 0.0 <= result["methods"]["judge"]["parse_failure_rate"] <= 1.0
    scores = result["_scores"]["probe:tiny"]["negation_nli"]
    assert len(scores) == 8 and all(0.0 <= p <= 1.0 for p in scores)
    assert "| probe:tiny |" in (out / "table.md").read_text()
    assert (out / "reliability.png").stat().st_size > 1000 and (out / "per_set.png").stat().st_size > 1000


def test_eval_rejects_bad_arguments(tmp_path, capsys):
    from unspoken.runtime.cli import main

    assert main(["eval", "--suite", str(tmp_path / "missing.jsonl"), "--no-own-test"]) == 2
    assert "not found" in capsys.readouterr().err
    file = _suite(tmp_path, 4, "s")
    assert main(["eval", "--suite", str(file), "--baselines", "oracle", "--bundle", "x=y", "--no-own-test"]) == 2
    assert "available" in capsys.readouterr().err
