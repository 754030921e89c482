"""Fixtures for the hostile-client tests: raw sockets that send exactly the bytes a hostile client would, and
a well-behaved bystander that must keep working whatever they do.

pytest runs with ``--import-mode=importlib``, which does not put test directories on sys.path; this conftest
does it for its own directory, so tests can ``import wire`` and ``import harness``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import wire  # noqa: E402

from fakebroker import ThreadedBroker  # noqa: E402


@pytest.fixture
def broker(fakebroker: ThreadedBroker) -> ThreadedBroker:
    """The plugin's fresh broker (configure it with ``@pytest.mark.fakebroker(**options)``)."""
    return fakebroker


@pytest.fixture
def raw(broker: ThreadedBroker) -> Iterator[Callable[..., wire.RawMqtt]]:
    """Factory: ``raw()`` -> a socket connected to the broker's MQTT listener, no CONNECT sent yet."""
    made: list[wire.RawMqtt] = []

    def make(**kwargs: Any) -> wire.RawMqtt:
        c = wire.RawMqtt(tuple(broker.mqtt), **kwargs)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def bystander(broker: ThreadedBroker) -> Iterator[wire.Bystander]:
    """A subscriber and a publisher on their own connections; ``check()`` fails unless a message goes round."""
    b = wire.Bystander(tuple(broker.mqtt))  # type: ignore[arg-type]
    yield b
    b.close()
