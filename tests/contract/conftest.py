"""Contract suite wiring: the ``backend`` fixture (fake and rabbitmq), the ``difference`` marker, the summary.

pytest runs with ``--import-mode=importlib``, which does not put test directories on sys.path; this conftest
does it for its own directory, so scenarios can ``import contractlib`` (and it ``import rabbitmq``).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import amqpkit  # noqa: E402
import contractlib  # noqa: E402
import privatenode  # noqa: E402
from kit.needs import need  # noqa: E402

DIFFERENCES = HERE.parent.parent / "docs" / "differences.md"
BACKENDS = ("fake", "rabbitmq")
_USER_PROPERTY = "contract_backend"  # read by tests/conftest.py's summary
_rabbitmq_checked: list[str | None] = []  # [problem] once checked in this process


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "difference(name): the scenario observes a deliberate difference between fakebroker and RabbitMQ 3.10; "
        "it asserts RabbitMQ's behaviour on the rabbitmq backend and fakebroker's on the fake one. ``name`` is "
        "the anchor of its section in docs/differences.md",
    )


@functools.cache
def _anchors() -> frozenset[str]:
    """GitHub-style anchors of the headings of docs/differences.md, plus explicit ``<a id=...>`` ones."""
    if not DIFFERENCES.exists():
        return frozenset()
    text = DIFFERENCES.read_text(encoding="utf-8")
    out = set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return frozenset(out)


def _rabbitmq_problem() -> str | None:
    if not _rabbitmq_checked:
        problem = contractlib.rabbitmq_problem()
        if problem is None:
            contractlib.delete_stale_vhosts()
        _rabbitmq_checked.append(problem)
    return _rabbitmq_checked[0]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[contractlib.Backend]:
    """The broker under test: a fresh fakebroker, or the real RabbitMQ with a vhost of the test's own.

    The rabbitmq variant is skipped when FAKEBROKER_RABBITMQ is unset, and fails when it is set (as in CI)
    but the node does not answer.
    """
    name: str = request.param
    request.node.user_properties.append((_USER_PROPERTY, name))
    marker = request.node.get_closest_marker("difference")
    if marker is not None:
        section = marker.args[0] if marker.args else None
        if section not in _anchors():
            pytest.fail(f"@difference({section!r}) names no section of {DIFFERENCES.name}")
    if name == "rabbitmq":
        _require_rabbitmq()
    with contractlib.backend_for(name) as b:
        yield b


def _require_rabbitmq() -> None:
    problem = _rabbitmq_problem()
    # Without FAKEBROKER_RABBITMQ these scenarios are deselected (tests/conftest.py); with it, a node that does
    # not answer is a failure.
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def both_backends(request: pytest.FixtureRequest) -> None:
    """For scenarios that compare the two backends directly: skips (or, with FAKEBROKER_RABBITMQ set, fails)
    like the ``backend`` fixture's rabbitmq variant. The test makes its backends itself."""
    request.node.user_properties.append((_USER_PROPERTY, "fake+rabbitmq"))
    _require_rabbitmq()


@pytest.fixture(scope="module")
def private_rabbitmq() -> Iterator[privatenode.PrivateNode]:
    """A RabbitMQ node of the module's own (privatenode.py), for scenarios that would disturb the shared one."""
    need(privatenode.problem())
    node = privatenode.PrivateNode()
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(params=BACKENDS)
def alarm_backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Like ``backend``, for the resource alarm scenarios: a fresh fakebroker (``broker.block()``), or a private
    RabbitMQ node (``rabbitmqctl set_vm_memory_high_watermark 0``): an alarm on the shared node would block
    every other scenario's publishers. Both offer ``alarm``, ``clear_alarm`` and ``connection_states``."""
    name: str = request.param
    request.node.user_properties.append((_USER_PROPERTY, name))
    if name == "fake":
        b: Any = amqpkit.FakeAlarmBackend()
    else:
        # Deselected without FAKEBROKER_RABBITMQ (tests/conftest.py); the shared node itself is not needed.
        b = privatenode.PrivateRabbitBackend(request.getfixturevalue("private_rabbitmq"))
    try:
        yield b
    finally:
        b.close()
