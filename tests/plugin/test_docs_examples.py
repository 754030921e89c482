"""docs/pytest.md's examples pass as written: every fenced block whose first line is ``# <file name>`` is a file
of one small suite, run here with pytester."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "pytest.md"
BLOCK = re.compile(r"^```(?:python|ini)\n# (?P<name>[\w.]+)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def examples() -> dict[str, str]:
    files = {m["name"]: m["body"] for m in BLOCK.finditer(DOC.read_text())}
    assert len(files) == len(BLOCK.findall(DOC.read_text())), "two examples share a file name"
    return files


def test_the_guide_has_the_examples_it_promises() -> None:
    names = set(examples())
    assert {"pytest.ini", "test_quickstart.py", "test_first_client.py", "test_outage.py", "test_async_app.py"} <= names


def test_docs_examples_pass(pytester: pytest.Pytester) -> None:
    # Loaded here, in the outer run, so the in-process run below does not import (and then unload) them afresh;
    # see the app fixture in conftest.py.
    import anyio._backends._trio  # noqa: F401
    import hypothesis  # noqa: F401

    files = examples()
    for name, body in files.items():
        (pytester.path / name).write_text(body)
    tests = sum(len(re.findall(r"^(?:async )?def test_", body, re.MULTILINE)) for body in files.values())
    result = pytester.runpytest("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    # The async example runs on two backends.
    assert outcomes == {"passed": tests + 1}
