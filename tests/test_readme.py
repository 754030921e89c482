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
