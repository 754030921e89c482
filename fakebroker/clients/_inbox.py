"""The inbox both shipped clients keep: waits that fail with a clear message instead of hanging."""

from __future__ import annotations

import queue
from typing import TypeVar

T = TypeVar("T")


def take(inbox: queue.Queue[T], timeout: float, failure: str) -> T:
    """The next item, or an AssertionError saying ``failure`` once ``timeout`` seconds have passed."""
    try:
        return inbox.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(failure) from None


def take_many(inbox: queue.Queue[T], count: int, timeout: float, who: str) -> list[T]:
    """The next ``count`` items, each within ``timeout``; the failure lists what did arrive."""
    out: list[T] = []
    for _ in range(count):
        try:
            out.append(inbox.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"{who}expected {count} messages, got {out}") from None
    return out


def none_within(inbox: queue.Queue[T], seconds: float) -> bool:
    """True when nothing arrives within ``seconds``; what does arrive is put back at the front."""
    try:
        item = inbox.get(timeout=seconds)
    except queue.Empty:
        return True
    with inbox.mutex:  # the client library's thread may be putting the next one in
        inbox.queue.appendleft(item)
        inbox.not_empty.notify()
    return False
