"""A state machine of one classic queue, driven through the model and checked against a reference model.

The queue has a length limit (drop-head, reject-publish or reject-publish-dlx), a message TTL, per-message
expirations and, optionally, a dead-letter exchange. The machine publishes, gets (with and without ack),
acks/nacks/rejects (with and without requeue, single and multiple) and advances the virtual clock. Times
and TTLs are binary fractions, so no float rounding separates the two models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fakebroker.clock import VirtualClock
from fakebroker.errors import PreconditionFailed
from fakebroker.model import Broker, Channel

TTLS_MS = [0, 250, 500, 1000, 1500, 2000]
STEPS = [0.0, 0.25, 0.5, 1.0, 2.0]


@dataclass
class Ref:
    """A message as the reference model sees it."""

    id: int
    expires_at: float | None
    expiration: str | None
    redelivered: bool = False


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock()
        self.broker = Broker(self.clock)
        self.vhost = self.broker.vhost()
        self.channel = Channel(self.vhost, object())
        self.dropped: list[tuple[str, bytes, str]] = []
        self.broker.on("dropped", lambda vhost, queue, message, reason: self.dropped.append(
            (queue, message.body, reason)))
        # Reference state.
        self.now = 0.0
        self.ready: list[Ref] = []
        self.unacked: dict[int, Ref] = {}
        self.ref_dropped: list[tuple[str, bytes, str]] = []
        self.dead: list[tuple[Ref, str]] = []  # what the DLX should have received, in order
        self.next_id = 0
        self.next_tag = 0

    @initialize(
        max_length=st.sampled_from([1, 2, 3, None, 0]),
        overflow=st.sampled_from(["drop-head", "drop-head", "reject-publish", "reject-publish-dlx"]),
        ttl=st.sampled_from([None, None, None, *TTLS_MS]),
        dlx=st.booleans(),
    )
    def declare(self, max_length: int | None, overflow: str, ttl: int | None, dlx: bool) -> None:
        args: dict[str, Any] = {"x-overflow": overflow}
        if max_length is not None:
            args["x-max-length"] = max_length
        if ttl is not None:
            args["x-message-ttl"] = ttl
        if dlx:
            args["x-dead-letter-exchange"] = "dlx"
            self.vhost.declare_exchange("dlx", "fanout")
            self.vhost.declare_queue("dlq")
            self.vhost.bind("dlq", "dlx")
        self.queue = self.vhost.declare_queue("q", arguments=args)
        self.max_length, self.overflow, self.ttl, self.dlx = max_length, overflow, ttl, dlx

    # -- the reference model --------------------------------------------------------------------------
    def _die(self, ref: Ref, reason: str) -> None:
        self.ref_dropped.append(("q", b"%d" % ref.id, reason))
        if self.dlx:
            self.dead.append((ref, reason))

    def _expire_head(self) -> None:
        while self.ready and self.ready[0].expires_at is not None and self.ready[0].expires_at <= self.now:
            self._die(self.ready.pop(0), "expired")

    def _drop_over_limit(self) -> None:
        if self.overflow == "drop-head" and self.max_length is not None:
            while len(self.ready) > self.max_length:
                self._die(self.ready.pop(0), "maxlen")

    # -- rules ----------------------------------------------------------------------------------------------
    @rule(expirations=st.lists(st.sampled_from([None, None, None, *TTLS_MS]), min_size=1, max_size=3))
    def publish(self, expirations: list[int | None]) -> None:
        for expiration in expirations:
            self._publish(expiration)

    def _publish(self, expiration: int | None) -> None:
        self.next_id += 1
        ttls = [t for t in (self.ttl, expiration) if t is not None]
        ref = Ref(self.next_id, self.now + min(ttls) / 1000 if ttls else None,
                  None if expiration is None else str(expiration))
        props = {} if expiration is None else {"expiration": str(expiration)}
        logged = self.broker.publish("", "q", b"%d" % ref.id, props)
        full = self.max_length is not None and len(self.ready) + 1 > self.max_length
        if self.overflow != "drop-head" and full:
            assert logged.queues == ()
            if self.overflow == "reject-publish-dlx":
                self._die(ref, "maxlen")
            return
        assert logged.queues == ("q",)
        self.ready.append(ref)
        self._drop_over_limit()
        self._expire_head()

    @rule(ack=st.sampled_from([True, True, False]))
    def get(self, ack: bool) -> None:
        delivery = self.channel.get("q", no_ack=not ack)
        self._expire_head()
        if not self.ready:
            assert delivery is None
            return
        ref = self.ready.pop(0)
        self._expire_head()
        self.next_tag += 1
        assert delivery is not None
        assert delivery.body == b"%d" % ref.id
        assert delivery.redelivered is ref.redelivered
        assert delivery.delivery_tag == self.next_tag
        assert delivery.message_count == len(self.ready)
        if ack:
            self.unacked[delivery.delivery_tag] = ref

    @precondition(lambda self: self.unacked)
    @rule(data=st.data(), outcome=st.sampled_from(["ack", "requeue", "reject"]), multiple=st.booleans())
    def settle(self, data: st.DataObject, outcome: str, multiple: bool) -> None:
        tag = data.draw(st.sampled_from(sorted(self.unacked)))
        if outcome == "ack":
            self.channel.ack(tag, multiple=multiple)
        elif outcome == "requeue":
            self.channel.nack(tag, multiple=multiple, requeue=True)
        else:
            self.channel.reject(tag, requeue=False) if not multiple else self.channel.nack(
                tag, multiple=True, requeue=False)
        for t in sorted(t for t in self.unacked if t == tag or (multiple and t <= tag)):
            ref = self.unacked.pop(t)
            if outcome == "requeue":
                ref.redelivered = True
                self.ready.append(ref)
                self.ready.sort(key=lambda r: r.id)  # back in its original place
                self._drop_over_limit()
                self._expire_head()
            elif outcome == "reject":
                self._die(ref, "rejected")

    @rule(multiple=st.booleans())
    def settle_unknown_tag(self, multiple: bool) -> None:
        with pytest.raises(PreconditionFailed, match=r"^PRECONDITION_FAILED - unknown delivery tag 999$"):
            self.channel.ack(999, multiple=multiple)

    @precondition(lambda self: self.unacked)
    @rule()
    def ack_everything(self) -> None:
        self.channel.ack(0, multiple=True)
        self.unacked.clear()

    @rule(seconds=st.sampled_from(STEPS))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.now += seconds
        self._expire_head()

    @rule()
    def close_channel(self) -> None:
        """Closing the channel requeues every unacknowledged message; a new channel takes over."""
        self.channel.close()
        for t in sorted(self.unacked):
            ref = self.unacked.pop(t)
            ref.redelivered = True
            self.ready.append(ref)
            self.ready.sort(key=lambda r: r.id)
            self._drop_over_limit()
            self._expire_head()
        self.channel = Channel(self.vhost, object())
        self.next_tag = 0

    # -- invariants ------------------------------------------------------------------------------------------
    @invariant()
    def same_ready_messages(self) -> None:
        if not hasattr(self, "queue"):
            return
        assert [m.body for m in self.queue.peek()] == [b"%d" % r.id for r in self.ready]
        assert self.queue.message_count == len(self.ready)
        assert self.queue.unacked == len(self.unacked) == self.channel.unacked_count
        assert self.queue.ready_bytes == sum(len(b"%d" % r.id) for r in self.ready)

    @invariant()
    def same_drops_and_dead_letters(self) -> None:
        if not hasattr(self, "queue"):
            return
        assert self.dropped == self.ref_dropped
        if not self.dlx:
            return
        dead = self.vhost.queue("dlq").peek()
        assert [m.body for m in dead] == [b"%d" % r.id for r, _ in self.dead]
        for message, (ref, reason) in zip(dead, self.dead, strict=True):
            assert message.exchange == "dlx" and message.routing_key == "q"
            assert "expiration" not in message.properties
            (death,) = message.headers["x-death"]
            assert {k: v for k, v in death.items() if k != "time"} == {
                "count": 1, "reason": reason, "queue": "q", "exchange": "", "routing-keys": ["q"],
                **({} if ref.expiration is None else {"original-expiration": ref.expiration}),
            }
            assert message.headers["x-first-death-reason"] == reason
            assert message.headers["x-first-death-queue"] == "q"
            assert message.headers["x-first-death-exchange"] == ""

    @invariant()
    def a_timer_waits_for_an_expiring_head(self) -> None:
        if not hasattr(self, "queue"):
            return
        head = self.ready[0] if self.ready else None
        if head is not None and head.expires_at is not None:
            deadline = self.clock.next_deadline()
            assert deadline is not None and deadline <= head.expires_at


QueueMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
TestQueueMachine = QueueMachine.TestCase
