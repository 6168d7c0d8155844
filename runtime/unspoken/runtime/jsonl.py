"""Reading JSONL files with errors that name the file and line (never a bare traceback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

from .errors import InputError


def iter_jsonl(path: str | Path, on_error: Callable[[int, str], None] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line.

    A line that is not a JSON object raises InputError naming ``path:line``, or, with ``on_error``, is reported
    through it and skipped. Bytes that are not UTF-8 are reported the same way. A byte-order mark at the start of the
    file is skipped, and control characters (tabs, NUL, escapes) are accepted inside strings whether written raw or
    escaped: they can only mean themselves.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if not path.is_file():
        raise InputError(f"{path} is not a file")

    def fail(n: int, message: str) -> None:
        if on_error is None:
            raise InputError(f"{path}:{n}: {message}")
        on_error(n, message)

    try:
        f = path.open("rb")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                fail(n, f"not valid UTF-8 (byte {e.start})")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line, strict=False)
            except json.JSONDecodeError as e:
                fail(n, f"not valid JSON ({e.msg}, column {e.colno})")
                continue
            if not isinstance(row, dict):
                fail(n, "each line must be a JSON object")
                continue
            yield n, row
