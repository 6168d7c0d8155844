"""Write docs/bad-inputs.md: every bad input we try, and what the library and the command line answer.

Each case is run for real against a bundle, so the table is what the code does, not what we meant it to do;
``tests/test_docs.py`` regenerates it on the tests' tiny bundle and fails when the committed file differs.

    python docs/make_bad_inputs_table.py              # builds the tests' tiny bundle (needs the export extra)
    python docs/make_bad_inputs_table.py --bundle DIR  # any bundle (token counts then differ from the committed file)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bad-inputs.md"
LONG = "I used to hate this product, but honestly now I love it. " * 200  # ~5,000 tokens on the tiny tokenizer

HEADER = """# Bad inputs: what you see

Every input below was tried by `docs/make_bad_inputs_table.py`, which wrote this file from what the code actually
did, against the tests' tiny bundle (a random 4-layer llama with a 2,048-token context: token counts differ on a real
backbone). `tests/test_docs.py` regenerates it and fails when it is out of date.

The rules: a user mistake is a typed exception in the library (`InputError`, a `ValueError`, for content, criteria
and options; `BundleError` and its `BindingError` for bundles; all are `UnspokenError`) and, on the command line, one
line `unspoken: error: ...` on standard error with exit status 2 (argparse's own usage errors also exit 2), never a
traceback.

Decisions worth knowing:

- **Control characters are text.** Tabs, newlines, NUL, ANSI escapes, the bell, bidi marks and zero-width characters
  are accepted and scored as they are, from Python, arguments, standard input and JSONL. Stripping them would change
  what the model reads. In JSONL they may even be written raw inside strings (strict JSON wants them escaped; they
  can only mean themselves), except a raw newline, which ends the line.
- **Blank means Unicode whitespace** (`str.strip`): content of only zero-width spaces is not blank and is scored.
- **A UTF-8 byte-order mark** at the start of standard input or of a JSONL file is dropped, not scored.
- **Bytes that are not UTF-8** are refused with the byte offset, wherever they come from (standard input, a JSONL
  line, a command-line argument).
- **Content longer than the backbone's context** is refused with the token counts; `truncate=True` (`--truncate`)
  keeps the longest beginning that fits beside the longest criterion of the call and reports `truncated: true`. A
  criterion that alone fills the context is refused either way.
- `unspoken score` stops at the first bad row, naming `file:line`; rows before it are already in the output file.
"""


@dataclass
class Case:
    what: str  # the bad input, in words
    call: str  # the call or command, as shown
    run: Callable[[], str]  # returns the outcome, as shown


def _code(text: str) -> str:
    text = text.replace("|", "\\|").replace("\n", "\\n")
    return f"`{text}`" if "`" not in text else f"``{text}``"


def _library(fn: Callable[[], object]) -> Callable[[], str]:
    def run() -> str:
        from unspoken.runtime import UnspokenError

        try:
            got = fn()
        except UnspokenError as e:
            return f"{type(e).__name__}: {_code(str(e))}"
        except Exception as e:  # noqa: BLE001 - a crash is exactly what the table must show
            return f"**crash**: {type(e).__name__}: {_code(str(e))}"
        truncated = getattr(got, "truncated", None)
        return "scored" + (f" (`truncated={truncated}`)" if truncated is not None else "")

    return run


class _Cli:
    """Runs ``unspoken.runtime.cli.main`` in this process with a given stdin, capturing what the user would see."""

    def __init__(self, bundle: Path, tmp: Path) -> None:
        self.bundle, self.tmp = bundle, tmp

    def case(self, what: str, argv: list[str], *, stdin: bytes = b"", shown: str | None = None,
             files: dict[str, bytes] | None = None) -> Case:
        def run() -> str:
            from unspoken.runtime.cli import main

            (self.tmp / "out.jsonl").unlink(missing_ok=True)
            for name, data in (files or {}).items():
                (self.tmp / name).write_bytes(data)
            real = [a.replace("BUNDLE", str(self.bundle)).replace("TMP/", f"{self.tmp}/") for a in argv]
            out, err = io.StringIO(), io.StringIO()
            old_stdin = sys.stdin
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    try:
                        code = main(real)
                    except SystemExit as e:  # argparse usage errors
                        code = e.code
                    except Exception as e:  # noqa: BLE001
                        return f"**crash** | {type(e).__name__}: {_code(str(e))}"
            finally:
                sys.stdin = old_stdin
            if "Traceback" in err.getvalue():
                return f"**traceback** | {_code(err.getvalue())}"
            if code == 0:
                shown_out = "prints the results" if argv[0] == "classify" else "writes every row to out.jsonl"
                if '"truncated": true' in out.getvalue() or '"truncated": true' in _read(self.tmp / "out.jsonl"):
                    shown_out += ' with `"truncated": true`'
                return f"0 | {shown_out}"
            lines = [line for line in err.getvalue().splitlines() if "error:" in line]
            return f"{code} | " + "<br>".join(_code(self._clean(line)) for line in lines)

        return Case(what, _code(shown or "unspoken " + " ".join(_shell(a) for a in argv)), run)

    def _clean(self, text: str) -> str:
        return text.replace(f"{self.tmp}/", "").replace(str(self.tmp), ".").replace(str(self.bundle), "BUNDLE")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _shell(arg: str) -> str:
    if arg and re.fullmatch(r"[\w./:=-]+", arg):
        return arg
    return json.dumps(arg, ensure_ascii=True) if len(arg) < 60 else '"<~5,000 tokens of text>"'


def _normalise(text: str, bundle: Path, tmp: Path) -> str:
    text = text.replace(f"{tmp}/", "").replace(str(tmp), ".").replace(str(bundle), "BUNDLE")
    text = re.sub(r"[0-9a-f]{64}", "<sha256>", text)
    text = re.sub(r"available: \w+(, \w+)*", "available: <this machine's providers>", text)
    return re.sub(r"[0-9a-f]{16}\.\.\.", "<sha256 prefix>...", text)


def cases(bundle: Path, tmp: Path) -> tuple[list[Case], list[Case]]:
    """The library cases and the command-line cases."""
    from unspoken.runtime import Classifier

    clf = Classifier(bundle, threads=1)

    def copy(edit: Callable[[Path], None]) -> Callable[[], object]:
        def make():
            dst = tmp / "edited-bundle"
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(bundle, dst)
            edit(dst)
            return Classifier(dst)

        return make

    def manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
        def edit(b: Path) -> None:
            m = json.loads((b / "manifest.json").read_text())
            change(m)
            (b / "manifest.json").write_text(json.dumps(m))

        return edit

    def append_byte(b: Path) -> None:
        with open(b / "head.onnx", "ab") as f:
            f.write(b"\0")

    s = clf.score
    lib = [
        Case("empty content", 'score("", ["c"])', _library(lambda: s("", ["c"]))),
        Case("whitespace-only content", r'score(" \n\t ", ["c"])', _library(lambda: s(" \n\t ", ["c"]))),
        Case("content that is not a string", 'score(42, ["c"])', _library(lambda: s(42, ["c"]))),
        Case("content as bytes", 'score(b"text", ["c"])', _library(lambda: s(b"text", ["c"]))),
        Case("content None", 'score(None, ["c"])', _library(lambda: s(None, ["c"]))),
        Case("a lone surrogate (e.g. from JSON `\\ud800`)", 'score("a \\ud800 b", ["c"])',
             _library(lambda: s("a \ud800 b", ["c"]))),
        Case("control characters, ANSI escapes, bidi and zero-width marks",
             'score("nul\\x00 esc\\x1b[31m \\u202e \\u200b", ["tab\\tbell\\x07"])',
             _library(lambda: clf.score_detailed("nul\x00 esc\x1b[31m \u202e \u200b", ["tab\tbell\x07"]))),
        Case("content of zero-width spaces only", 'score("\\u200b\\u200b", ["c"])',
             _library(lambda: clf.score_detailed("\u200b\u200b", ["c"]))),
        Case("no criteria", 'score("text", [])', _library(lambda: s("text", []))),
        Case("criteria None", 'score("text", None)', _library(lambda: s("text", None))),
        Case("criteria as a generator", 'score("text", (c for c in ["a"]))',
             _library(lambda: s("text", (c for c in ["a"])))),
        Case("criteria as one string", 'score("text", "c")', _library(lambda: clf.score_detailed("text", "c"))),
        Case("an empty criterion", 'score("text", ["ok", ""])', _library(lambda: s("text", ["ok", ""]))),
        Case("a criterion that is not a string", 'score("text", ["ok", 3])', _library(lambda: s("text", ["ok", 3]))),
        Case("content longer than the context", 'score(LONG, ["c"])', _library(lambda: s(LONG, ["c"]))),
        Case("the same, truncating", 'score_detailed(LONG, ["c"], truncate=True)',
             _library(lambda: clf.score_detailed(LONG, ["c"], truncate=True))),
        Case("a criterion longer than the context", 'score("text", ["word " * 3000], truncate=True)',
             _library(lambda: s("text", ["word " * 3000], truncate=True))),
    ]
    sibling = _criterion_first(bundle)
    if sibling is not None:
        lib.append(Case("use_cache=True on a criterion-first bundle", 'features("text", ["c"], use_cache=True)',
                        _library(lambda: Classifier(sibling).features("text", ["c"], use_cache=True))))
    lib += [
        Case("zero threads", "Classifier(BUNDLE, threads=0)", _library(lambda: Classifier(bundle, threads=0))),
        Case("zero chunk size", "Classifier(BUNDLE, chunk_size=0)", _library(lambda: Classifier(bundle, chunk_size=0))),
        Case("an execution provider that is not installed", 'Classifier(BUNDLE, providers=["NoSuchProvider"])',
             _library(lambda: Classifier(bundle, providers=["NoSuchProvider"]))),
        Case("a bundle folder that does not exist", 'Classifier("missing")',
             _library(lambda: Classifier(tmp / "missing"))),
        Case("a file instead of a bundle folder", 'Classifier("BUNDLE/head.onnx")',
             _library(lambda: Classifier(bundle / "head.onnx"))),
        Case("a folder that is not a bundle", 'Classifier(".")', _library(lambda: Classifier(tmp))),
        Case("a bundle file edited after export", "one byte appended to head.onnx", _library(copy(append_byte))),
        Case("a bundle file deleted", "head.onnx removed", _library(copy(lambda b: (b / "head.onnx").unlink()))),
        Case("manifest.json that is not JSON", "manifest.json truncated",
             _library(copy(lambda b: (b / "manifest.json").write_text('{"schema_version": 1,')))),
        Case("a manifest from a newer unspoken", '"schema_version": 99',
             _library(copy(manifest(lambda m: m.update(schema_version=99))))),
        Case("a head trained at another layer", '"head.binding.extraction_layer": 2',
             _library(copy(manifest(lambda m: m["head"]["binding"].update(extraction_layer=2))))),
        Case("a head trained on another backbone", '"head.binding.backbone_fingerprint" changed',
             _library(copy(manifest(lambda m: m["head"]["binding"].update(backbone_fingerprint="f" * 64))))),
    ]

    cli = _Cli(bundle, tmp)
    row = b'{"id": 1, "content": "fine", "criterion": "c"}\n'
    score = ["score", "--bundle", "BUNDLE", "--input", "TMP/in.jsonl", "--output", "TMP/out.jsonl"]

    def jsonl(what: str, second: bytes, *, first: bytes = row, extra: tuple[str, ...] = (), shown: str = "") -> Case:
        return cli.case(what, score + list(extra), files={"in.jsonl": first + second},
                        shown=shown or f"in.jsonl line 2: {second.decode('utf-8', 'backslashreplace').strip().replace(chr(9), '<TAB>')}")

    classify = ["classify", "--bundle", "BUNDLE"]
    long_row = json.dumps({"id": 2, "content": LONG, "criterion": "c"}).encode() + b"\n"
    cmd = [
        cli.case("empty text", classify + ["-c", "c", ""]),
        cli.case("an empty criterion", classify + ["-c", " ", "text"]),
        cli.case("no criterion", classify + ["text"]),
        cli.case("text not valid UTF-8 (argument)", classify + ["-c", "c", os.fsdecode(b"caf\xe9")],
                 shown="unspoken classify --bundle BUNDLE -c c $'caf\\xe9'"),
        cli.case("criterion not valid UTF-8 (argument)", classify + ["-c", os.fsdecode(b"\xff"), "text"],
                 shown="unspoken classify --bundle BUNDLE -c $'\\xff' text"),
        cli.case("standard input not valid UTF-8", classify + ["-c", "c", "-"], stdin=b"caf\xe9",
                 shown="printf 'caf\\xe9' | unspoken classify --bundle BUNDLE -c c -"),
        cli.case("empty standard input", classify + ["-c", "c", "-"], stdin=b"",
                 shown="unspoken classify --bundle BUNDLE -c c - < /dev/null"),
        cli.case("control characters and a byte-order mark on standard input", classify + ["-c", "c", "-"],
                 stdin=b"\xef\xbb\xbftab\tnul\x00 esc\x1b[0m",
                 shown="printf '\\xef\\xbb\\xbftab\\tnul\\x00 esc\\x1b[0m' | unspoken classify --bundle BUNDLE -c c -"),
        cli.case("text longer than the context", classify + ["-c", "c", LONG]),
        cli.case("the same, truncating", classify + ["--truncate", "-c", "c", LONG]),
        cli.case("zero threads", classify + ["--threads", "0", "-c", "c", "text"]),
        cli.case("threads not a number", classify + ["--threads", "two", "-c", "c", "text"]),
        cli.case("a bundle folder that does not exist", ["classify", "--bundle", "TMP/missing", "-c", "c", "text"]),
        cli.case("an input file that does not exist", ["score", "--bundle", "BUNDLE", "--input", "TMP/nope.jsonl",
                                                        "--output", "TMP/out.jsonl"]),
        cli.case("a folder as the input file", ["score", "--bundle", "BUNDLE", "--input", "TMP/",
                                                "--output", "TMP/out.jsonl"]),
        cli.case("a folder as the output file", ["score", "--bundle", "BUNDLE", "--input", "TMP/in.jsonl",
                                                 "--output", "TMP/"], files={"in.jsonl": row}),
        jsonl("a line that is not JSON", b"{not json\n"),
        jsonl("a line that is not a JSON object", b"[1, 2]\n"),
        jsonl("a line that is not valid UTF-8", b'{"id": 2, "content": "caf\xe9", "criterion": "c"}\n'),
        jsonl("a row without an id", b'{"content": "text", "criterion": "c"}\n'),
        jsonl("a row with both criterion and criteria", b'{"id": 2, "content": "t", "criterion": "c", "criteria": ["c"]}\n'),
        jsonl("a list under criterion", b'{"id": 2, "content": "t", "criterion": ["a", "b"]}\n'),
        jsonl("an empty criteria list", b'{"id": 2, "content": "t", "criteria": []}\n'),
        jsonl("content that is not a string", b'{"id": 2, "content": 7, "criterion": "c"}\n'),
        jsonl("an empty content", b'{"id": 2, "content": "", "criterion": "c"}\n'),
        jsonl("an escaped lone surrogate", b'{"id": 2, "content": "\\ud800", "criterion": "c"}\n'),
        jsonl("raw and escaped control characters", b'{"id": 2, "content": "raw\ttab, escaped\\u0000", "criterion": "c"}\n'),
        jsonl("a byte-order mark before line 1", b"", first=b"\xef\xbb\xbf" + row,
              shown="in.jsonl starts with the bytes EF BB BF"),
        jsonl("content longer than the context", long_row,
              shown='in.jsonl line 2: {"id": 2, "content": "<~5,000 tokens>", "criterion": "c"}'),
        jsonl("the same, truncating", long_row, extra=("--truncate",), shown="the same file, with --truncate"),
    ]
    return lib, cmd


def _criterion_first(bundle: Path) -> Path | None:
    """The criterion-first sibling of a tests' tiny bundle, when there is one."""
    sibling = bundle.with_name(bundle.name.replace("content-first", "criterion-first"))
    return sibling if sibling != bundle and sibling.is_dir() else None


def render(bundle: str | Path) -> str:
    """The whole markdown file for ``bundle``."""
    bundle = Path(bundle).resolve()
    with tempfile.TemporaryDirectory(prefix="unspoken-bad-inputs-") as t:
        tmp = Path(t).resolve()
        lib, cmd = cases(bundle, tmp)
        lines = [HEADER, "## Library (`from unspoken.runtime import Classifier`; `clf = Classifier(BUNDLE)`)", "",
                 "| bad input | call | what you get |", "|---|---|---|"]
        for c in lib:
            lines.append(f"| {c.what} | {_code(c.call)} | {_normalise(c.run(), bundle, tmp)} |")
        lines += ["", "## Command line", "", "| bad input | command | exit | what you see (standard error) |",
                  "|---|---|---|---|"]
        for c in cmd:
            lines.append(f"| {c.what} | {c.call} | {_normalise(c.run(), bundle, tmp)} |")
    return "\n".join(lines) + "\n"


def _tiny_bundle(root: Path) -> Path:
    """The tests' tiny llama bundles (content-first and criterion-first), built the way tests/conftest.py builds them."""
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest
    from tiny_models import make_tiny_model
    from unspoken.export.backbones import load_backbone
    from unspoken.export.bundle import export_bundle
    from unspoken.runtime.template import default_template

    folder = make_tiny_model(root / "llama", "llama")
    bb = load_backbone(folder, progress=False)
    out = {}
    for order in ("content-first", "criterion-first"):
        head = conftest.random_head(bb, conftest.TINY_LAYER, default_template(order), root / f"head-llama-{order}")
        out[order] = export_bundle(folder, root / f"bundle-llama-{order}", head, progress=False)
    return out["content-first"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, help="bundle folder (default: build the tests' tiny bundle)")
    ap.add_argument("--out", type=Path, default=DOC)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="unspoken-tiny-") as t:
        bundle = args.bundle or _tiny_bundle(Path(t))
        text = render(bundle)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
