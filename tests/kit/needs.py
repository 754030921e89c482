"""Tests that need a program from outside PyPI (Chromium, Node and npm packages, a real RabbitMQ)."""

from __future__ import annotations

import os

import pytest

#: Set by .ci/run, which installs every such program: there a missing one is a failure, never a skip.
REQUIRE_ALL = "FAKEBROKER_REQUIRE_ALL"


def need(problem: str | None) -> None:
    """Skip the test with ``problem`` (what is missing and how to get it), or fail it where CI promised it all."""
    if problem is None:
        return
    if os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{problem} (.ci/run installs it; {REQUIRE_ALL}=1 makes it required)", pytrace=False)
    pytest.skip(f"{problem}; .ci/run installs it")
