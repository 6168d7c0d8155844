"""`unspoken score` loses nothing: rows are flushed as they are scored, a run killed midway (SIGKILL) resumes with
--resume, a half-written last line is dropped and rescored, and the result equals an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import needs_export

BUNDLE = ("llama", "content-first")
ROWS = 1500


def write_input(path, n=ROWS):
    rows = []
    for i in range(n):
        row = {"id": f"r{i}" if i % 5 else i, "content": f"Note {i}: I {'love' if i % 2 else 'hate'} the new thing."}
        if i % 3:
            row["criterion"] = f"The writer likes it ({i % 4})."
        else:
            row["criteria"] = ["About a phone.", f"The writer likes it ({i % 4})."]
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def read_output(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def line_count(path):
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@needs_export
def test_killed_run_resumes_to_the_uninterrupted_result(tiny_bundles, tmp_path):
    from unspoken.runtime.cli import main

    bundle = str(tiny_bundles[BUNDLE])
    src = tmp_path / "in.jsonl"
    rows = write_input(src)
    reference = tmp_path / "reference.jsonl"
    assert main(["score", "--bundle", bundle, "--input", str(src), "--output", str(reference)]) == 0

    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "unspoken.runtime.cli", "score", "--bundle", bundle, "--input", str(src),
           "--output", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while line_count(out) < 40 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed; use more rows"
    written = line_count(out)
    assert 40 <= written < ROWS
    with out.open("a") as f:  # what a kill in the middle of a write leaves behind
        f.write('{"id": "r999999", "probab')

    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"({written} kept from an earlier run)" in res.stderr
    assert "row/s" in res.stderr  # the progress bar shows a rate (and an ETA)
    got = read_output(out)
    assert [r["id"] for r in got] == [r["id"] for r in rows]  # every id once, in input order
    assert got == read_output(reference)


@needs_export
def test_resume_of_a_finished_run_scores_nothing(tiny_bundles, tmp_path):
    from unspoken.runtime.batch import score_jsonl

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 5)
    calls = []

    def factory():
        from unspoken.runtime import Classifier

        calls.append(1)
        return Classifier(tiny_bundles[BUNDLE])

    first = score_jsonl(factory, src, out, progress=False)
    before = out.read_bytes()
    again = score_jsonl(factory, src, out, resume=True, progress=False)
    assert (first.scored, again.kept, again.scored, len(calls)) == (5, 5, 0, 1)  # no bundle load the second time
    assert out.read_bytes() == before


@needs_export
def test_bad_row_keeps_the_rows_before_it(tiny_bundles, tmp_path):
    from unspoken.runtime import InputError
    from unspoken.runtime.batch import score_jsonl

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"id": 1, "content": "fine", "criterion": "ok"}\n{"id": 2, "content": "   ", "criterion": "ok"}\n')
    from unspoken.runtime import Classifier

    clf = Classifier(tiny_bundles[BUNDLE])
    with pytest.raises(InputError, match=r"in\.jsonl:2: content is empty"):
        score_jsonl(clf, src, out, progress=False)
    assert [r["id"] for r in read_output(out)] == [1]
    src.write_text('{"id": 1, "content": "fine", "criterion": "ok"}\n'
                   '{"id": 2, "content": "fixed", "criterion": "ok"}\n')
    assert score_jsonl(clf, src, out, resume=True, progress=False).kept == 1
    assert [r["id"] for r in read_output(out)] == [1, 2]


def test_duplicate_ids_are_refused(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "content": "a", "criterion": "b"}\n{"id": 1, "content": "c", "criterion": "d"}\n')
    res = subprocess.run([sys.executable, "-m", "unspoken.runtime.cli", "score", "--bundle", str(tmp_path),
                          "--input", str(src), "--output", str(tmp_path / "o.jsonl")], capture_output=True, text=True)
    assert res.returncode == 2 and "in.jsonl:2: id 1 already appears on line 1" in res.stderr
    assert "Traceback" not in res.stderr


def test_resume_refuses_another_jobs_output(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"id": "a", "content": "x", "criterion": "y"}\n')
    out.write_text('{"id": "zzz", "probability": 0.5}\n')
    res = subprocess.run([sys.executable, "-m", "unspoken.runtime.cli", "score", "--bundle", str(tmp_path),
                          "--input", str(src), "--output", str(out), "--resume"], capture_output=True, text=True)
    assert res.returncode == 2 and 'out.jsonl:1: id "zzz" is not in the input' in res.stderr
    assert "Traceback" not in res.stderr
