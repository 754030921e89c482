"""The Python API reference (docs/api.md) is a reference: every public method and property of the broker handle,
the clock, the shipped MQTT client and the session-testing kit has an example in its docstring, and every
example runs.

``>>>`` examples are doctests, each docstring against a fresh broker (``kit.docs.doctest_globals``); the
fixtures' examples are ``# test_<name>.py`` files of one small suite, run with pytest.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.docs import count_tests, fenced_blocks, run_doctest

from fakebroker.clients.mqtt import MqttClient
from fakebroker.facade import AsyncBroker, ClientList, ClockProxy, MessageLog, ThreadedBroker
from fakebroker.testing import SessionDriver

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "api.md"

#: Classes every public method and property of which has an example (the broker handle and what it hands out,
#: the shipped client). For AsyncBroker, the members it defines itself: the others are ThreadedBroker's.
EVERY_MEMBER = [ThreadedBroker, AsyncBroker, ClockProxy, ClientList, MessageLog, MqttClient, SessionDriver]
#: Functions and classes that have an example themselves.
THEMSELVES = ["fakebroker.start", "fakebroker.serve", "fakebroker.Options", "fakebroker.testing.FakeHost",
              "fakebroker.testing.SessionDriver", "fakebroker.testing.check_session_contract",
              "fakebroker.pytest_plugin.fakebroker", "fakebroker.pytest_plugin.fakebroker_factory",
              "fakebroker.pytest_plugin.async_fakebroker", "fakebroker.pytest_plugin.mqtt_client"]


def resolve(path: str) -> Any:
    """``fakebroker.testing.FakeHost`` -> the object, importing the longest module prefix."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def documented_paths() -> list[str]:
    return [line[4:].strip() for line in REFERENCE.read_text().splitlines() if line.startswith("::: ")]


def docstring(obj: Any) -> str:
    """The docstring of a function, property, class, or of the function a pytest fixture wraps."""
    wrapped = getattr(obj, "_get_wrapped_function", None)  # a pytest fixture definition (pytest >= 8.4)
    if callable(wrapped):
        obj = wrapped()
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def own_members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties of ``cls`` and of its bases in fakebroker, nearest definition first."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("fakebroker"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(value, (classmethod, staticmethod)):
                value = value.__func__
            if isinstance(value, property) or inspect.isfunction(value):
                yield f"{klass.__module__}.{klass.__qualname__}.{name}", value


def docstrings() -> dict[str, tuple[Any, str]]:
    """Every docstring the reference renders, by the qualified name of its owner (each one once)."""
    found: dict[str, tuple[Any, str]] = {}
    for path in documented_paths():
        obj = resolve(path)
        found.setdefault(path, (obj, docstring(obj)))
        if inspect.isclass(obj):
            for name, member in own_members(obj):
                found.setdefault(name, (member, docstring(member)))
    return found


def has_example(doc: str) -> bool:
    return ">>>" in doc or any(block.kind == "file" for block in fenced_blocks(doc, ""))


def location(obj: Any) -> tuple[str, int]:
    target = obj.fget if isinstance(obj, property) else getattr(obj, "_get_wrapped_function", lambda: obj)()
    target = inspect.unwrap(target)
    try:
        return str(Path(inspect.getsourcefile(target) or "?").relative_to(ROOT)), inspect.getsourcelines(target)[1]
    except (TypeError, OSError, ValueError):
        return "?", 0


DOCTESTS = {name: obj for name, (obj, doc) in docstrings().items() if ">>>" in doc}


def test_the_reference_renders_the_testing_kit() -> None:
    paths = set(documented_paths())
    missing = [p for p in THEMSELVES if p not in paths]
    assert not missing, f"docs/api.md does not render {missing}"


def test_every_member_has_an_example() -> None:
    found = docstrings()
    missing: list[str] = []
    for cls in EVERY_MEMBER:
        members = own_members(cls) if cls is not AsyncBroker else (
            (f"{cls.__module__}.AsyncBroker.{n}", v) for n, v in vars(cls).items()
            if not n.startswith("_") and (isinstance(v, property) or inspect.isfunction(v)))
        for name, member in members:
            if not has_example(docstring(member)):
                file, line = location(member)
                missing.append(f"  {name} ({file}:{line})")
    missing += [f"  {path}" for path in THEMSELVES if not has_example(docstring(resolve(path)))]
    assert found  # the reference was read
    assert not missing, ("these have no example in their docstring (an `Examples:` section with `>>>` lines, or "
                         "for a fixture a ```python block starting with `# test_<name>.py`):\n" + "\n".join(missing))


@pytest.mark.parametrize("name", sorted(DOCTESTS))
def test_docstring_example_runs(name: str) -> None:
    obj = DOCTESTS[name]
    file, line = location(obj)
    run_doctest(docstring(obj), name, file, line)


def test_fixture_examples_pass(pytester: pytest.Pytester) -> None:
    files: dict[str, str] = {}
    for name, (_, doc) in docstrings().items():
        for block in fenced_blocks(doc, name):
            assert block.kind in ("file", "other"), (
                f"{name}: a fenced Python block in a docstring must be a `# test_<name>.py` file "
                "(use `>>>` examples for the rest)")
            if block.kind == "file":
                assert block.name is not None and block.name not in files, f"{name}: file {block.name} twice"
                files[block.name] = block.body
    assert files, "no fixture examples found"
    for file_name, body in files.items():
        (pytester.path / file_name).write_text(body)
    # In a subprocess: the plugin comes from its entry point, as for a user.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= count_tests(files) and set(outcomes) == {"passed"}, outcomes


def test_the_examples_use_the_public_names() -> None:
    # The reference says what is importable from the top-level package; the broker's examples stick to it.
    parser = doctest.DocTestParser()
    for name, obj in DOCTESTS.items():
        code = "".join(example.source for example in parser.get_examples(docstring(obj)))
        internal = re.findall(r"fakebroker\.(?:facade|model|observe|server|node)\b", code)
        assert not internal, f"{name}: its example uses {internal}; use the names fakebroker exports"
