"""Suite-wide hooks. They live here, not in tests/contract/conftest.py, because pytest-xdist's controller
process loads only the conftest files of the paths on the command line (and their parents), so a hook in a
subdirectory never reaches the terminal summary of a plain ``pytest -n 2``."""

from __future__ import annotations

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
    for name in CONTRACT_BACKENDS:
        part = f"{_passed[name]} passed on {name}"
        if _skipped[name]:
            part += f" ({_skipped[name]} skipped)"
        parts.append(part)
    terminalreporter.write_line("contract scenarios: " + ", ".join(parts))
    return result
