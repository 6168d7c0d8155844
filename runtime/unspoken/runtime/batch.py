"""Batch scoring of a JSONL file that loses nothing: every output row is written and flushed as soon as it is
scored, in input order, and ``resume=True`` keeps what an interrupted run wrote (dropping a half-written last line)
and scores only the ids still missing.

Input rows are ``{"id", "content", "criterion"}`` -> ``{"id", "probability", "truncated"}`` or ``{"id", "content",
"criteria": [...]}`` -> ``{"id", "probabilities": [...], "truncated"}``. Ids must be unique, since resuming goes by
id. ``truncate=True`` cuts content too long for the backbone to the beginning that fits (``"truncated": true``)
instead of refusing the row.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import InputError
from .jsonl import iter_jsonl

if TYPE_CHECKING:
    from .classifier import Classifier

DEFAULT_CHUNK_ROWS = 16


@dataclass(frozen=True)
class ScoreStats:
    """What one ``score_jsonl`` call did."""

    total: int  # rows in the input
    kept: int  # rows an earlier run had already written (resume)
    scored: int  # rows scored by this call


def id_key(value: object) -> str:
    """A canonical text form of a row id, so 7 and "7" stay different ids and dicts compare by content."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def read_input(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) for each input row, checked for the fields scoring needs and for unique ids."""
    rows: list[tuple[int, dict]] = []
    seen: dict[str, int] = {}
    for n, row in iter_jsonl(path):
        if "id" not in row or "content" not in row:
            raise InputError(f"{path}:{n}: each row needs 'id' and 'content'")
        if ("criterion" in row) == ("criteria" in row):
            raise InputError(f"{path}:{n}: give exactly one of 'criterion' or 'criteria'")
        if "criterion" in row and not isinstance(row["criterion"], str):
            got = type(row["criterion"]).__name__
            raise InputError(f"{path}:{n}: 'criterion' must be a string, got {got} (use 'criteria' for a list)")
        key = id_key(row["id"])
        if key in seen:
            raise InputError(f"{path}:{n}: id {key} already appears on line {seen[key]}; ids must be unique")
        seen[key] = n
        rows.append((n, row))
    return rows


def recover_output(path: Path, wanted: set[str]) -> set[str]:
    """Ids already written to ``path`` by an earlier run; cuts off a half-written last line so appending is safe.

    A complete line that is not one of this input's results means ``path`` is not this job's output: that is an
    InputError naming the line rather than a silent mix of two jobs.
    """
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # bytes after the last newline are a line the earlier run did not finish
    done: set[str] = set()
    for n, raw in enumerate(data[:end].splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(f"{path}:{n}: not a result line (not valid JSON); is --output the right file?") from None
        key = id_key(row.get("id")) if isinstance(row, dict) and "id" in row else None
        if key is None or key not in wanted:
            raise InputError(f"{path}:{n}: id {key} is not in the input; is --output the right file?")
        if key in done:
            raise InputError(f"{path}:{n}: id {key} is written twice; is --output the right file?")
        done.add(key)
    if end < len(data):
        with path.open("r+b") as f:
            f.truncate(end)
    return done


def _result(row: dict, probabilities: list[float], truncated: bool) -> dict:
    if "criterion" in row:
        return {"id": row["id"], "probability": probabilities[0], "truncated": truncated}
    return {"id": row["id"], "probabilities": probabilities, "truncated": truncated}


def _writable(path: Path, what: Callable[[], object]):
    """Run ``what`` (a file operation on ``path``); an OSError becomes a one-line InputError."""
    try:
        return what()
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None


def score_jsonl(
    classifier: "Classifier | Callable[[], Classifier]",
    input_path: str | Path,
    output_path: str | Path,
    *,
    resume: bool = False,
    truncate: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool = True,
) -> ScoreStats:
    """Score ``input_path`` into ``output_path`` row by row (see the module docstring).

    ``classifier`` may be a factory, called only when there is something to score, so input mistakes surface
    before a bundle loads. Rows are scored ``chunk_rows`` at a time through ``Classifier.score_prepared`` and each
    result line is flushed as soon as its chunk is done; a bad row raises InputError naming ``input:line`` after
    the rows before it are written, so fixing it and resuming loses nothing.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    rows = read_input(input_path)
    done: set[str] = set()
    if resume and output_path.is_file():
        wanted = {id_key(row["id"]) for _, row in rows}
        done = _writable(output_path, lambda: recover_output(output_path, wanted))
    pending = [(n, row) for n, row in rows if id_key(row["id"]) not in done]
    stats = ScoreStats(total=len(rows), kept=len(done), scored=len(pending))
    _writable(output_path, lambda: output_path.parent.mkdir(parents=True, exist_ok=True))
    if not pending:
        if not output_path.exists():
            _writable(output_path, output_path.touch)
        return stats
    clf = classifier if hasattr(classifier, "score_prepared") else classifier()
    from tqdm.auto import tqdm

    out = _writable(output_path, lambda: output_path.open("a" if done else "w", encoding="utf-8"))
    with out, tqdm(
        total=len(rows), initial=len(done), desc="score", unit="row", file=sys.stderr, disable=not progress,
        smoothing=0.1,
    ) as bar:
        for start in range(0, len(pending), chunk_rows):
            chunk = pending[start : start + chunk_rows]
            prepared, error = [], None
            for n, row in chunk:
                criteria = [row["criterion"]] if "criterion" in row else row["criteria"]
                try:
                    prepared.append(clf.prepare(row["content"], criteria, truncate=truncate))
                except InputError as e:
                    error = InputError(f"{input_path}:{n}: {e}", field=e.field)
                    break
            for (_, row), item, probabilities in zip(chunk, prepared, clf.score_prepared(prepared)):
                out.write(json.dumps(_result(row, probabilities, item.truncated), ensure_ascii=False) + "\n")
                out.flush()
                bar.update(1)
            if error is not None:
                raise error
    return stats
