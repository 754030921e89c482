"""pytest plugin: the ``fakebroker`` fixture (a started, empty broker per test on the virtual clock)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .facade import ThreadedBroker, start


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fakebroker(**options): options for the fakebroker fixture's broker")


@pytest.fixture
def fakebroker(request: pytest.FixtureRequest) -> Iterator[ThreadedBroker]:
    """A started, empty broker on free ports and the virtual clock, stopped after the test."""
    options: dict[str, object] = {}
    for marker in reversed(list(request.node.iter_markers("fakebroker"))):
        options.update(marker.kwargs)
    with start(**options) as broker:
        yield broker
