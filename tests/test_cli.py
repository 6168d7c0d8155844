"""The unspoken command: classify and score print/write JSON; user mistakes exit 2 with one line, no traceback."""

import json
import subprocess
import sys

import pytest

from conftest import needs_export

BUNDLE = ("llama", "content-first")


def run_cli(*args, stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "unspoken.runtime.cli", *args], input=stdin,
                          capture_output=True, text=True)


@needs_export
def test_classify_prints_probabilities(tiny_bundles, capsys):
    from unspoken.runtime.cli import main

    assert main(["classify", "--bundle", str(tiny_bundles[BUNDLE]), "-c", "likes it", "-c", "about cars",
                 "I love it"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["criterion"] for r in out["results"]] == ["likes it", "about cars"]
    assert all(0 <= r["probability"] <= 1 for r in out["results"])


@needs_export
def test_classify_reads_stdin(tiny_bundles):
    res = run_cli("classify", "--bundle", str(tiny_bundles[BUNDLE]), "-c", "likes it", "-", stdin="I love it")
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["results"]) == 1


@needs_export
def test_score_jsonl_keeps_order_and_shapes(tiny_bundles, tmp_path):
    from unspoken.runtime.cli import main

    rows = [{"id": "a", "content": "I love it", "criterion": "likes it"},
            {"id": 7, "content": "Rain again.", "criteria": ["about weather", "likes it", "x"]}]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["score", "--bundle", str(tiny_bundles[BUNDLE]), "--input", str(src), "--output", str(dst)]) == 0
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [o["id"] for o in out] == ["a", 7]
    assert isinstance(out[0]["probability"], float) and len(out[1]["probabilities"]) == 3


@needs_export
@pytest.mark.parametrize("args,message", [
    (["-c", "   ", "text"], "criteria[0] is empty"),
    (["-c", "ok", "  "], "content is empty"),
])
def test_user_mistakes_exit_2_without_traceback(tiny_bundles, args, message):
    res = run_cli("classify", "--bundle", str(tiny_bundles[BUNDLE]), *args)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr


def test_missing_bundle_is_one_line(tmp_path):
    res = run_cli("classify", "--bundle", str(tmp_path / "nope"), "-c", "x", "y")
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_bad_jsonl_names_the_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "content": "a", "criterion": "b"}\n{not json\n')
    res = run_cli("score", "--bundle", str(tmp_path), "--input", str(src), "--output", str(tmp_path / "o.jsonl"))
    assert res.returncode == 2 and "in.jsonl:2" in res.stderr
