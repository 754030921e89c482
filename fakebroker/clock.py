"""The broker's only source of time.

Every timer in fakebroker (message TTL, queue expiry, MQTT keepalive, subscription TTL, ...) is scheduled
on a clock. :class:`VirtualClock` never moves by itself: a test calls :meth:`VirtualClock.advance` and every
due timer fires, in time order, before ``advance`` returns. :class:`WallClock` follows ``time.monotonic``;
the server runtime fires its timers from the event loop.

Clocks are not thread-safe: like the rest of the model they belong to the broker's event loop.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any, Literal

#: How far past its target VirtualClock.advance() reaches, to absorb float rounding in sums of steps.
_SLACK = 1e-9


class TimerHandle:
    """A scheduled callback; :meth:`cancel` makes sure it never runs."""

    __slots__ = ("when", "_seq", "_callback", "_args", "cancelled", "_clock")

    def __init__(self, when: float, seq: int, callback: Callable[..., Any], args: tuple[Any, ...],
                 clock: Clock | None = None) -> None:
        self.when = when
        self._seq = seq
        self._callback: Callable[..., Any] | None = callback
        self._args = args
        self.cancelled = False
        self._clock = clock  # while the handle sits in that clock's heap

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self._callback = None
        self._args = ()
        if self._clock is not None:
            self._clock._cancelled_in_heap()

    def _run(self) -> None:
        # Already out of the heap: mark it done without counting it as a cancelled entry.
        callback, args = self._callback, self._args
        self._clock = None
        self.cancel()
        if callback is not None:
            callback(*args)

    def __lt__(self, other: TimerHandle) -> bool:
        return (self.when, self._seq) < (other.when, other._seq)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "pending"
        return f"<TimerHandle when={self.when:.3f} {state}>"


class Clock:
    """Timer bookkeeping shared by both clocks: a heap of handles ordered by (when, scheduling order).

    What the runtime relies on: :meth:`now`, :meth:`call_at`, :meth:`next_deadline`, :meth:`run_due` and the
    :attr:`on_schedule` hook; a clock of one's own subclasses this and implements ``now`` and ``run_due``.
    """

    def __init__(self) -> None:
        self._timers: list[TimerHandle] = []
        self._cancelled = 0  # cancelled handles still in the heap
        self._seq = itertools.count()
        # Set by the server runtime so that a WallClock can wake its timer task when an earlier timer appears.
        self.on_schedule: Callable[[], None] | None = None

    def now(self) -> float:
        raise NotImplementedError

    def run_due(self) -> None:
        """Run every timer due at :meth:`now`."""
        raise NotImplementedError

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(when, next(self._seq), callback, args, self)
        heapq.heappush(self._timers, handle)
        if self.on_schedule is not None:
            self.on_schedule()
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.call_at(self.now() + max(0.0, delay), callback, *args)

    def next_deadline(self) -> float | None:
        """When the earliest pending timer is due, or None."""
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)._clock = None
            self._cancelled -= 1
        return self._timers[0].when if self._timers else None

    def pending(self) -> int:
        return len(self._timers) - self._cancelled

    def _cancelled_in_heap(self) -> None:
        # Timers re-armed over and over (queue expiry, keepalives) leave cancelled handles behind until their
        # time comes; rebuild the heap when they are the majority, so a long run does not pile them up.
        self._cancelled += 1
        if self._cancelled > 64 and 2 * self._cancelled > len(self._timers):
            live = [t for t in self._timers if not t.cancelled]
            for t in self._timers:
                if t.cancelled:
                    t._clock = None
            heapq.heapify(live)
            self._timers = live
            self._cancelled = 0

    def _pop_due(self, until: float) -> TimerHandle | None:
        while self._timers:
            top = self._timers[0]
            if top.cancelled:
                heapq.heappop(self._timers)._clock = None
                self._cancelled -= 1
                continue
            if top.when > until:
                return None
            return heapq.heappop(self._timers)
        return None


class VirtualClock(Clock):
    """A clock that only moves when told to. Starts at ``start`` seconds (default 0)."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every timer that falls due, in time order.

        A timer scheduled by another timer fires in the same call if it is due by the target time.
        """
        if seconds < 0:
            raise ValueError("the clock cannot go backwards")
        target = self._now + seconds
        # Timers within a nanosecond of the target fire too: ten advance(0.1) calls reach a 1 s timer even
        # though they add up to 0.9999999999999999. Such a timer still runs with now() == its own deadline,
        # and time never goes back afterwards.
        while (handle := self._pop_due(target + _SLACK)) is not None:
            self._now = max(self._now, handle.when)
            handle._run()
        self._now = max(self._now, target)

    def run_due(self) -> None:
        """Run timers due at the current time (for example ones scheduled with a zero delay)."""
        self.advance(0)

    def __repr__(self) -> str:
        return f"<VirtualClock now={self._now:.3f} pending={self.pending()}>"


class WallClock(Clock):
    """Real time (``time.monotonic``). Its timers are fired by the server runtime's timer task."""

    def now(self) -> float:
        return time.monotonic()

    def run_due(self) -> None:
        while (handle := self._pop_due(self.now())) is not None:
            handle._run()

    def __repr__(self) -> str:
        return f"<WallClock pending={self.pending()}>"


ClockName = Literal["virtual", "wall"]


def make_clock(spec: ClockName | str | Clock) -> Clock:
    if isinstance(spec, Clock):
        return spec
    if spec == "virtual":
        return VirtualClock()
    if spec == "wall":
        return WallClock()
    raise ValueError(f"clock must be 'virtual', 'wall' or a Clock instance, not {spec!r}")
