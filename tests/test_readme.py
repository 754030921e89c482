"""The README's commands (its Python examples run in tests/test_docs_examples.py)."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_commands_use_separate_venvs() -> None:
    """The serve command installs the package (not editable) and the test command installs it editable with
    the extras; in one venv the second would replace the first's install."""
    commands = [line for line in README.read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2
    venvs = [line.split()[3] for line in commands]
    assert venvs[0] != venvs[1]
    assert all(f"{venv}/bin/" in line for venv, line in zip(venvs, commands, strict=True))
