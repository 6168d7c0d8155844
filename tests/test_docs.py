"""docs/bad-inputs.md is what the code does today: regenerated on the tiny bundle, it must equal the committed file."""

import importlib.util
import sys
from pathlib import Path

from conftest import needs_export

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("make_bad_inputs_table", ROOT / "docs" / "make_bad_inputs_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@needs_export
def test_bad_inputs_table_is_current_and_shows_no_crash(tiny_bundles):
    text = _generator().render(tiny_bundles[("llama", "content-first")])
    assert "**crash**" not in text and "**traceback**" not in text
    assert text == (ROOT / "docs" / "bad-inputs.md").read_text(encoding="utf-8"), (
        "docs/bad-inputs.md is out of date: run python docs/make_bad_inputs_table.py"
    )


def test_readme_links_the_bad_inputs_table():
    assert "docs/bad-inputs.md" in (ROOT / "README.md").read_text(encoding="utf-8")
