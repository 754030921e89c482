"""docs/amqp.md's examples pass as written: every fenced block whose first line is ``# <file name>`` is a test
file, run here with pytester (the fakebroker plugin and its fixtures loaded as for any user)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "amqp.md"
BLOCK = re.compile(r"^```python\n# (?P<name>[\w.]+)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def test_amqp_docs_examples_pass(pytester: pytest.Pytester) -> None:
    files = {m["name"]: m["body"] for m in BLOCK.finditer(DOC.read_text())}
    assert set(files) == {"test_backend.py", "test_celery_task.py"}
    for name, body in files.items():
        (pytester.path / name).write_text(body)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 2}
