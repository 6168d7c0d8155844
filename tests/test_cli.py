"""The unspoken command: classify and score print/write JSON; user mistakes exit 2 with one line, no traceback."""

import io
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
    assert out["truncated"] is False


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
    assert [o["truncated"] for o in out] == [False, False]


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


LONG = "I used to hate this product, but honestly now I love it. " * 200  # longer than the tiny backbones' 2,048


def _stdin(monkeypatch, data: bytes):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@needs_export
def test_truncate_flag_cuts_long_content_and_says_so(tiny_bundles, capsys):
    from unspoken.runtime import Classifier
    from unspoken.runtime.cli import main

    bundle = str(tiny_bundles[BUNDLE])
    assert main(["classify", "--bundle", bundle, "-c", "likes it", LONG]) == 2
    err = capsys.readouterr().err
    assert "the backbone takes at most 2048" in err and "--truncate" in err and len(err.strip().splitlines()) == 1
    assert main(["classify", "--bundle", bundle, "--truncate", "-c", "likes it", LONG]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["truncated"] is True
    want = Classifier(bundle).score(LONG, ["likes it"], truncate=True)[0]
    assert out["results"][0]["probability"] == round(want, 6)


@needs_export
def test_score_truncate_marks_each_row(tiny_bundles, tmp_path):
    from unspoken.runtime.cli import main

    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps({"id": 1, "content": LONG, "criterion": "x"}) + "\n"
                   + json.dumps({"id": 2, "content": "short", "criteria": ["x", "y"]}) + "\n")
    args = ["score", "--bundle", str(tiny_bundles[BUNDLE]), "--input", str(src), "--output", str(dst)]
    assert main(args) == 2  # refused without --truncate
    assert main(args + ["--truncate"]) == 0
    assert [json.loads(line)["truncated"] for line in dst.read_text().splitlines()] == [True, False]


@needs_export
def test_invalid_utf8_on_stdin_is_one_line(tiny_bundles, monkeypatch, capsys):
    from unspoken.runtime.cli import main

    _stdin(monkeypatch, b"caf\xe9 au lait")
    assert main(["classify", "--bundle", str(tiny_bundles[BUNDLE]), "-c", "x", "-"]) == 2
    assert capsys.readouterr().err == "unspoken: error: standard input is not valid UTF-8 (byte 3)\n"


@needs_export
def test_control_characters_and_a_bom_on_stdin_are_scored(tiny_bundles, monkeypatch, capsys):
    from unspoken.runtime import Classifier
    from unspoken.runtime.cli import main

    text = "tab\there\nnew line\x00nul \x1b[31mansi\x1b[0m bell\x07"
    _stdin(monkeypatch, b"\xef\xbb\xbf" + text.encode())
    assert main(["classify", "--bundle", str(tiny_bundles[BUNDLE]), "-c", "x", "-"]) == 0
    got = json.loads(capsys.readouterr().out)["results"][0]["probability"]
    assert got == round(Classifier(tiny_bundles[BUNDLE]).score(text, ["x"])[0], 6)  # the BOM is not scored


@needs_export
def test_invalid_utf8_arguments_are_one_line(tiny_bundles):
    base = [sys.executable, "-m", "unspoken.runtime.cli", "classify", "--bundle", str(tiny_bundles[BUNDLE])]
    for args, message in [([b"-c", b"x", b"caf\xe9"], b"the text argument is not valid UTF-8 (byte 3)"),
                          ([b"-c", b"ok", b"-c", b"\xff", b"text"], b"criterion 2 (-c) is not valid UTF-8 (byte 0)")]:
        res = subprocess.run(base + args, capture_output=True)
        assert res.returncode == 2 and res.stderr == b"unspoken: error: " + message + b"\n", res.stderr


@needs_export
@pytest.mark.parametrize("line,message", [
    (b'{"id": 1, "content": "caf\xe9", "criterion": "x"}', "in.jsonl:2: not valid UTF-8 (byte 25)"),
    (b'{"id": 1, "content": "\\ud800", "criterion": "x"}', "in.jsonl:2: content holds a lone surrogate at index 0"),
    (b'{"id": 1, "content": "a", "criterion": ["x"]}', "in.jsonl:2: 'criterion' must be a string, got list"),
    (b'{"id": 1, "content": "a", "criteria": []}', "in.jsonl:2: criteria must be a non-empty list of strings"),
])
def test_bad_jsonl_rows_are_one_line(tiny_bundles, tmp_path, capsys, line, message):
    from unspoken.runtime.cli import main

    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"id": 0, "content": "fine", "criterion": "x"}\n' + line + b"\n")
    code = main(["score", "--bundle", str(tiny_bundles[BUNDLE]), "--input", str(src), "--output",
                 str(tmp_path / "out.jsonl")])
    err = capsys.readouterr().err  # the progress bar may precede the error line
    assert code == 2 and message in err.splitlines()[-1] and err.count("error") == 1, err


@needs_export
def test_jsonl_control_characters_raw_or_escaped_and_a_bom_are_scored(tiny_bundles, tmp_path):
    from unspoken.runtime import Classifier
    from unspoken.runtime.cli import main

    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b'\xef\xbb\xbf{"id": 1, "content": "raw\ttab and \x01", "criterion": "x"}\n'
                    b'{"id": 2, "content": "escaped\\ttab and \\u0001", "criterion": "x"}\n')
    assert main(["score", "--bundle", str(tiny_bundles[BUNDLE]), "--input", str(src), "--output", str(dst)]) == 0
    got = [json.loads(line)["probability"] for line in dst.read_text().splitlines()]
    clf = Classifier(tiny_bundles[BUNDLE])
    assert got == [clf.score("raw\ttab and \x01", "x")[0], clf.score("escaped\ttab and \x01", "x")[0]]


@needs_export
def test_unwritable_output_is_one_line(tiny_bundles, tmp_path, capsys):
    from unspoken.runtime.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "content": "a", "criterion": "b"}\n')
    assert main(["score", "--bundle", str(tiny_bundles[BUNDLE]), "--input", str(src), "--output", str(tmp_path)]) == 2
    assert "cannot write" in capsys.readouterr().err
