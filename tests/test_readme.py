"""The README's test command is the one CI runs, and its main command uses the example the project promises."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Set up", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    main, tests = _commands()
    assert "unspoken classify" in main
    assert "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text()
