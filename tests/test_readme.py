"""The README's ten-line example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no python example"
    namespace: dict[str, object] = {}
    try:
        exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    finally:
        device = namespace.get("device")
        if device is not None:
            device.loop_stop()  # type: ignore[attr-defined]
    assert "broker" in namespace


def test_readme_commands_use_separate_venvs() -> None:
    """The serve command installs the package (not editable) and the test command installs it editable with
    the extras; in one venv the second would replace the first's install."""
    commands = [line for line in README.read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2
    venvs = [line.split()[3] for line in commands]
    assert venvs[0] != venvs[1]
    assert all(f"{venv}/bin/" in line for venv, line in zip(venvs, commands, strict=True))
