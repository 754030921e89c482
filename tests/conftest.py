"""Suite-wide hooks. They live here, not in tests/contract/conftest.py, because pytest-xdist's controller
process loads only the conftest files of the paths on the command line (and their parents), so a hook in a
subdirectory never reaches the terminal summary of a plain ``pytest -n 2``."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Generator

import pytest

# pytester runs the small application suites of tests/plugin (the pytest plugin's own tests).
pytest_plugins = ["pytester"]

#: The contract suite's ``backend`` fixture tags each test report with this user property (fake/rabbitmq).
CONTRACT_BACKEND = "contract_backend"
CONTRACT_BACKENDS = ("fake", "rabbitmq")
_passed: Counter[str] = Counter()
_skipped: Counter[str] = Counter()


#: The contract suite's fixtures parametrized by backend.
CONTRACT_FIXTURES = ("backend", "alarm_backend")


def _wants_rabbitmq(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    return (any(params.get(name) == "rabbitmq" for name in CONTRACT_FIXTURES)
            or "both_backends" in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without FAKEBROKER_RABBITMQ the real-RabbitMQ variants of the contract scenarios are deselected, so the
    run reports them in one line instead of a skip line per scenario. With it set they run (and fail when the
    node does not answer)."""
    if os.environ.get("FAKEBROKER_RABBITMQ"):
        return
    kept = [item for item in items if not _wants_rabbitmq(item)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if _wants_rabbitmq(item)])
        items[:] = kept


def _contract_backends(report: pytest.TestReport) -> list[str]:
    """The backends a contract test ran on: "fake", "rabbitmq", or both ("fake+rabbitmq") for a comparison."""
    for key, value in report.user_properties:
        if key == CONTRACT_BACKEND:
            return str(value).split("+")
    return []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name in _contract_backends(report):
        if report.when == "call" and report.passed:
            _passed[name] += 1
        elif report.skipped and report.when in ("setup", "call"):
            _skipped[name] += 1


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None]:
    """``contract scenarios: N passed on fake, M passed on rabbitmq``, after pytest's short test summary (the
    outermost wrapper prints last)."""
    result = yield
    if not (_passed or _skipped):
        return result
    parts = []
    for name in CONTRACT_BACKENDS if os.environ.get("FAKEBROKER_RABBITMQ") else CONTRACT_BACKENDS[:1]:
        part = f"{_passed[name]} passed on {name}"
        if _skipped[name]:
            part += f" ({_skipped[name]} skipped)"
        parts.append(part)
    line = "contract scenarios: " + ", ".join(parts)
    if not os.environ.get("FAKEBROKER_RABBITMQ"):
        line += ("; the RabbitMQ variants were not run (start one with scripts/rabbitmq.sh start and set "
                 "FAKEBROKER_RABBITMQ=127.0.0.1)")
    terminalreporter.write_line(line)
    return result
