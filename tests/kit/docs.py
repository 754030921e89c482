"""Examples in the documentation, found and run: fenced blocks of Markdown pages and ``>>>`` examples of docstrings.

A fenced block is one of:

- a **file** of the page's test suite: its first line is ``# <file name>`` (``# test_device.py``,
  ``# conftest.py``, ``# pytest.ini``); the page's files are written to one directory and run with pytest;
- a **doctest**: a Python block whose first line starts with ``>>>``; it runs with :func:`doctest_globals`;
- an **excerpt**: the line before its opening fence is ``<!-- excerpt -->`` (a reason may follow:
  ``<!-- excerpt: needs a device -->``); it is only compiled;
- otherwise a Python block is a **script**, run on its own by a fresh interpreter.

Other blocks (``sh``, ``text``, ...) are not code to run.
"""

from __future__ import annotations

import doctest
import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PYTHON = {"python", "py", "python3", "pycon"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)
OPENING = re.compile(r"^[ \t]*```(?P<lang>[\w+-]*)", re.MULTILINE)
FILE_NAME = re.compile(r"# (?P<name>[\w.-]+\.(?:py|ini|cfg|toml))[ \t]*$")
EXCERPT = re.compile(r"^<!-- excerpt(?::[^>]*)? -->$")


@dataclass(frozen=True)
class Block:
    source: str  # the page, relative to the repository
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    kind: str  # "file", "doctest", "excerpt", "script" or "other"
    name: str | None = None  # the file name of a "file" block

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def classify(source: str, line: int, lang: str, body: str, excerpt: bool) -> Block:
    first = body.split("\n", 1)[0]
    named = FILE_NAME.fullmatch(first)
    if named:
        return Block(source, line, lang, body.split("\n", 1)[1] if "\n" in body else "", "file", named["name"])
    if lang not in PYTHON:
        return Block(source, line, lang, body, "other")
    if excerpt:
        return Block(source, line, lang, body, "excerpt")
    if first.lstrip().startswith(">>>"):
        return Block(source, line, lang, body, "doctest")
    return Block(source, line, lang, body, "script")


def fenced_blocks(text: str, source: str) -> list[Block]:
    """Every fenced block of ``text`` (a Markdown page or a docstring), classified."""
    blocks = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        body = textwrap.dedent(m["body"]) if m["indent"] else m["body"]
        blocks.append(classify(source, line, m["lang"], body, bool(EXCERPT.match(before))))
    python_fences = [m for m in OPENING.finditer(text) if m["lang"] in PYTHON]
    found = [b for b in blocks if b.lang in PYTHON]
    assert len(found) == len(python_fences), (
        f"{source}: {len(python_fences)} Python fences open but {len(found)} blocks close as expected "
        "(an opening fence without its closing one at the same indent?)")
    return blocks


def markdown_blocks(path: Path, root: Path) -> list[Block]:
    """Every fenced block of a Markdown page, classified."""
    return fenced_blocks(path.read_text(), str(path.relative_to(root)))


@contextmanager
def doctest_globals() -> Iterator[dict[str, Any]]:
    """What every example may use without importing it: ``fakebroker``, ``broker`` (a fresh
    ``fakebroker.start()``) and ``MqttClient``. Clients the example left open are closed, then the broker stops."""
    import fakebroker
    from fakebroker.clients.mqtt import MqttClient

    broker = fakebroker.start()
    names: dict[str, Any] = {"fakebroker": fakebroker, "broker": broker, "MqttClient": MqttClient}
    try:
        yield names
    finally:
        for value in list(names.values()):
            if isinstance(value, MqttClient):
                value.close()
        broker.stop()


def run_doctest(text: str, name: str, filename: str, lineno: int) -> None:
    """Run the ``>>>`` examples of ``text`` (a docstring, cleaned) with :func:`doctest_globals`; fail with
    doctest's report."""
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    with doctest_globals() as names:
        test = doctest.DocTestParser().get_doctest(text, names, name, filename, lineno)
        assert test.examples, f"{name}: no >>> examples"
        report: list[str] = []
        runner = doctest.DocTestRunner(optionflags=flags, verbose=False)
        result = runner.run(test, out=report.append, clear_globs=False)
    assert result.failed == 0, "".join(report)


TEST_FUNCTION = re.compile(r"^[ \t]*(?:async )?def test_", re.MULTILINE)


def count_tests(files: dict[str, str]) -> int:
    return sum(len(TEST_FUNCTION.findall(body)) for name, body in files.items() if name.endswith(".py"))
