"""Waiting in tests: until something happened, or fail after a timeout. Nothing sleeps to let a broker catch up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: Seconds to wait for something that should happen at once (a real RabbitMQ included); only reached on failure.
TIMEOUT = 5.0


def wait_until(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)
