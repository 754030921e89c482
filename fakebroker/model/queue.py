"""Queues: ready messages, consumers with prefetch, TTLs, length limits, expiry and dead-lettering."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..clock import Clock, TimerHandle
from .arguments import EQUIVALENCE_ARGUMENTS, args_inequivalence, format_value
from .message import Delivery, Message, parse_expiration

if TYPE_CHECKING:
    from .channel import Channel
    from .vhost import VHost

def _seq_of(qm: QueuedMessage) -> int:
    return qm.seq


@dataclass(eq=False, slots=True)
class QueuedMessage:
    message: Message
    seq: int
    expires_at: float | None
    size: int
    redelivered: bool = False


@dataclass(eq=False)
class Consumer:
    tag: str
    queue: Queue
    channel: Channel
    callback: Callable[[Delivery], None]
    no_ack: bool = False
    prefetch: int = 0  # 0 = unlimited
    unacked: int = 0
    # Who is behind it, for the delivery log (an MQTT client id, a STOMP session, ...).
    client_id: str | None = None
    # Out of the queue's rotation since it was found with a full prefetch window; back at the end on an ack.
    blocked: bool = False
    #: RabbitMQ's consumer priority (basic.consume's ``x-priority``): higher ones are served first, while they
    #: have room; consumers of one priority take turns.
    priority: int = 0

    def has_capacity(self) -> bool:
        flow = self.channel.flow
        if flow is not None and not flow():
            return False  # the channel's client is not reading: deliveries wait in the queue
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        # basic.qos with global: one window shared by every consumer of the channel.
        limit = self.channel.global_prefetch
        return not limit or self.channel.consumer_unacked < limit


@dataclass(eq=False)
class Queue:
    name: str
    vhost: VHost
    durable: bool = False
    auto_delete: bool = False
    exclusive_owner: object | None = None
    arguments: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.messages: deque[QueuedMessage] = deque()
        self.consumers: list[Consumer] = []
        self.exclusive_consumer: Consumer | None = None
        # The rotation, as rabbit_queue_consumers keeps it, one per consumer priority: the next consumer to try
        # first; a consumer goes to the back after each delivery, and leaves it when found with a full window.
        self._tiers: dict[int, deque[Consumer]] = {0: deque()}
        self._order: list[int] = [0]  # the priorities of _tiers, highest first
        self.unacked = 0
        self.ready_bytes = 0
        self.deleted = False
        self._seq = 0
        self._had_consumer = False
        self._dispatching = False
        self._ttl_timer: TimerHandle | None = None
        self._expires_timer: TimerHandle | None = None
        self._clock: Clock = self.vhost.broker.clock
        # The arguments are fixed once declared (a redeclare must be equivalent): read them once.
        args = self.arguments
        self._overflow: str = args.get("x-overflow", "drop-head")
        self._max_length: int | None = args.get("x-max-length")
        self._max_bytes: int | None = args.get("x-max-length-bytes")
        self._limited = self._max_length is not None or self._max_bytes is not None
        self._message_ttl: int | None = args.get("x-message-ttl")
        self._expires_ms: int | None = args.get("x-expires")
        self.touch()

    # -- properties ---------------------------------------------------------------------------
    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    @property
    def message_count(self) -> int:
        return len(self.messages)

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    # -- publishing ---------------------------------------------------------------------------
    def enqueue(self, message: Message) -> bool:
        """Add a routed message; False when ``x-overflow: reject-publish`` refused it."""
        if self.deleted:
            return False
        size = len(message.body)
        drop_head = self._overflow == "drop-head"
        if self._limited and not drop_head and self._full(extra=size):
            if self._overflow == "reject-publish-dlx":
                self.vhost.dead_letter(message, self, "maxlen")
            return False
        ttl = self._message_ttl
        expiration = message.properties.get("expiration")
        if expiration is not None:
            per_message = parse_expiration(expiration)
            if ttl is None or per_message < ttl:
                ttl = per_message
        expires_at = None if ttl is None else self._clock.now() + ttl / 1000.0
        self._seq += 1
        qm = QueuedMessage(message, self._seq, expires_at, size)
        if ttl == 0 and not self.messages and self._deliver_at_once(qm):
            return True
        # Otherwise a TTL-0 message is already expired: dropped here when it is the head, else when it gets there.
        self.messages.append(qm)
        self.ready_bytes += size
        if self._has_active():
            self.dispatch()
        if self._limited and drop_head:
            self._drop_over_limit()
        # Only the head's deadline matters (drop-head may have made an older message the head).
        if self._ttl_timer is not None or (self.messages and self.messages[0].expires_at is not None):
            self._after_change()
        return True

    def _full(self, extra: int | None = None) -> bool:
        """Over the limit now, or (with ``extra``) would be over it after one more message of that size."""
        max_len, max_bytes = self._max_length, self._max_bytes
        count, size = len(self.messages), self.ready_bytes
        if extra is None:
            return (max_len is not None and count > max_len) or (max_bytes is not None and size > max_bytes)
        return (max_len is not None and count + 1 > max_len) or (
            max_bytes is not None and size + extra > max_bytes
        )

    def _drop_over_limit(self) -> None:
        while self.messages and self._full():
            self._drop_head("maxlen")

    def _drop_head(self, reason: str) -> None:
        qm = self.messages.popleft()
        self.ready_bytes -= qm.size
        self.vhost.dead_letter(qm.message, self, reason)

    # -- delivering ---------------------------------------------------------------------------
    def _deliver_at_once(self, qm: QueuedMessage) -> bool:
        """Hand a message with TTL 0 to the next consumer that can take it now, as RabbitMQ's
        ``deliver_or_enqueue`` does before the message is ever queued; False when none can."""
        tiers = self._tiers
        while not self.deleted:
            for priority in self._order:
                active = tiers[priority]
                if active:
                    break
            else:
                return False
            consumer = active[0]
            if not consumer.has_capacity():
                active.popleft()
                consumer.blocked = True
                continue
            active.rotate(-1)
            self._deliver(consumer, qm)
            return True
        return False

    def dispatch(self) -> None:
        """Hand ready messages to consumers with room in their prefetch window, round-robin."""
        if self._dispatching:
            return
        self._dispatching = True
        try:
            tiers, order = self._tiers, self._order
            while self.messages and not self.deleted:
                for priority in order:
                    active = tiers[priority]
                    if active:
                        break
                else:
                    break
                consumer = active[0]
                if not consumer.has_capacity():
                    active.popleft()
                    consumer.blocked = True
                    continue
                qm = self._pop_live()
                if qm is None:
                    break
                active.rotate(-1)
                self._deliver(consumer, qm)
        finally:
            self._dispatching = False

    def _pop_live(self) -> QueuedMessage | None:
        messages = self.messages
        while messages:
            head = messages[0]
            # Due at its deadline, as in _expire(). A TTL-0 message reaches a consumer only on arrival
            # (_deliver_at_once): with a clock that moves on its own, "now" here is already later.
            if head.expires_at is not None and head.expires_at <= self._clock.now():
                self._drop_head("expired")
                continue
            messages.popleft()
            self.ready_bytes -= head.size
            return head
        return None

    def _deliver(self, consumer: Consumer, qm: QueuedMessage) -> None:
        channel = consumer.channel
        channel._next_tag += 1  # next_delivery_tag(), inlined: once per delivery
        tag = channel._next_tag
        record = self.vhost.broker.record_delivery(qm.message, self.name, consumer.client_id, qm.redelivered,
                                                   consumer.no_ack)
        if not consumer.no_ack:
            consumer.unacked += 1
            channel.consumer_unacked += 1
            self.unacked += 1
            channel._unacked[tag] = (qm, self, consumer, record)  # track(), inlined: once per delivery
        delivery = Delivery(qm.message, self.name, tag, qm.redelivered, consumer.tag)
        consumer.callback(delivery)

    def get(self, channel: Channel, no_ack: bool) -> Delivery | None:
        """basic.get: the head message, or None."""
        if self._expires_ms is not None:
            self.touch()
        messages = self.messages
        if messages and messages[0].expires_at is not None:
            self._expire()
        qm = self._pop_live()
        if qm is None:
            self._after_change()
            return None
        tag = channel.next_delivery_tag()
        record = self.vhost.broker.record_delivery(qm.message, self.name, channel.client_id, qm.redelivered, no_ack)
        if not no_ack:
            self.unacked += 1
            channel.track(tag, qm, self, None, record)
        if self._ttl_timer is not None or (messages and messages[0].expires_at is not None):
            self._after_change()
        return Delivery(qm.message, self.name, tag, qm.redelivered, None, len(messages))

    # -- acknowledgements (called by the channel) ---------------------------------------------
    def settle(self, qm: QueuedMessage, consumer: Consumer | None, outcome: str) -> None:
        """``outcome``: "ack", "requeue" or "reject" (dead-letter when configured)."""
        self.unacked -= 1
        if consumer is not None:
            consumer.unacked -= 1
            consumer.channel.consumer_unacked -= 1
            if consumer.blocked and consumer.has_capacity() and consumer in self.consumers:
                consumer.blocked = False
                self._activate(consumer)
        if self.deleted:
            return
        if outcome == "requeue":
            qm.redelivered = True
            # Requeued messages go back to their original place in the queue.
            messages = self.messages
            if not messages or qm.seq > messages[-1].seq:
                messages.append(qm)
            elif qm.seq < messages[0].seq:
                messages.appendleft(qm)
            else:
                messages.insert(bisect.bisect_left(messages, qm.seq, key=_seq_of), qm)
            self.ready_bytes += qm.size
            # As requeue_and_run/2: the length limit applies again (the head goes), then expiry at the head,
            # before anything is handed to a consumer.
            if self._limited and self._overflow == "drop-head":
                self._drop_over_limit()
            self._expire()
        elif outcome == "reject":
            self.vhost.dead_letter(qm.message, self, "rejected")
        self.dispatch()
        # As after an enqueue: the TTL timer needs a look only when one runs or the head has a deadline.
        if self._ttl_timer is not None or (self.messages and self.messages[0].expires_at is not None):
            self._after_change()

    # -- consumers ----------------------------------------------------------------------------
    def _has_active(self) -> bool:
        order = self._order
        if len(order) == 1:  # no consumer priorities in use: the common case, on every enqueue
            return bool(self._tiers[order[0]])
        return any(self._tiers.values())

    def _activate(self, consumer: Consumer) -> None:
        tier = self._tiers.get(consumer.priority)
        if tier is None:
            tier = self._tiers[consumer.priority] = deque()
            self._order = sorted(self._tiers, reverse=True)
        tier.append(consumer)

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self._activate(consumer)
        self._had_consumer = True
        self._cancel_expires()
        self.dispatch()
        self._after_change()

    def remove_consumer(self, consumer: Consumer) -> None:
        self.detach_consumer(consumer)
        self.consumers_changed()

    def unblock(self, consumer: Consumer) -> None:
        """A consumer found with a full window has room again (its channel's shared window opened)."""
        if consumer.blocked and consumer in self.consumers:
            consumer.blocked = False
            self._activate(consumer)
            self.dispatch()

    def detach_consumer(self, consumer: Consumer) -> None:
        if self.exclusive_consumer is consumer:
            self.exclusive_consumer = None
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            if consumer.blocked:
                consumer.blocked = False
            else:
                self._tiers[consumer.priority].remove(consumer)

    def consumers_changed(self) -> None:
        if self.deleted:
            return
        if not self.consumers:
            if self.auto_delete and self._had_consumer:
                self.vhost.delete_queue(self.name)
                return
            self.touch()

    # -- timers -------------------------------------------------------------------------------
    def touch(self) -> None:
        """The queue was used: restart the ``x-expires`` countdown (only runs while it has no consumer)."""
        self._cancel_expires()
        expires = self._expires_ms
        if expires is not None and not self.consumers and not self.deleted:
            self._expires_timer = self._clock.call_later(expires / 1000.0, self._on_expires)

    def _cancel_expires(self) -> None:
        if self._expires_timer is not None:
            self._expires_timer.cancel()
            self._expires_timer = None

    def _on_expires(self) -> None:
        self._expires_timer = None
        if not self.consumers and not self.deleted:
            self.vhost.delete_queue(self.name)

    def _expire(self) -> None:
        """Drop the messages at the head whose deadline has come (only the head: RabbitMQ semantics)."""
        messages = self.messages
        while messages:
            expires_at = messages[0].expires_at
            if expires_at is None or expires_at > self._clock.now():
                return
            self._drop_head("expired")

    def _after_change(self) -> None:
        """Expire what is due at the head and keep a timer no later than the head's deadline."""
        if self.deleted:
            return
        self._expire()
        head_expiry = self.messages[0].expires_at if self.messages else None
        timer = self._ttl_timer
        if head_expiry is None:
            if timer is not None:
                timer.cancel()
                self._ttl_timer = None
        elif timer is None or timer.when > head_expiry:
            # An earlier timer is kept: it fires, finds the head not due and re-arms. That spares a new
            # timer for every message taken from a queue whose deadlines only grow (x-message-ttl).
            if timer is not None:
                timer.cancel()
            self._ttl_timer = self._clock.call_at(head_expiry, self._on_ttl)

    def _on_ttl(self) -> None:
        self._ttl_timer = None
        self._after_change()
        self.dispatch()

    # -- lifecycle ----------------------------------------------------------------------------
    def purge(self) -> int:
        count = len(self.messages)
        self.messages.clear()
        self.ready_bytes = 0
        self._after_change()
        return count

    def on_deleted(self) -> None:
        self.deleted = True
        for timer in (self._ttl_timer, self._expires_timer):
            if timer is not None:
                timer.cancel()
        for consumer in list(self.consumers):
            consumer.channel.queue_deleted(consumer)
        self.consumers.clear()
        for tier in self._tiers.values():
            tier.clear()

    def peek(self) -> list[Message]:
        """The ready messages, head first, without consuming them."""
        return [qm.message for qm in self.messages]

    def equivalent_to(self, durable: bool, exclusive: bool, auto_delete: bool,
                      arguments: dict[str, Any]) -> str | None:
        """RabbitMQ's redeclare check: the first property that differs, as its error text."""
        resource = f"queue '{self.name}' in vhost '{self.vhost.name}'"
        for label, mine, theirs in (("durable", self.durable, durable),
                                    ("auto_delete", self.auto_delete, auto_delete)):
            if mine != theirs:
                return (f"inequivalent arg '{label}' for {resource}: "
                        f"received '{format_value(theirs)}' but current is '{format_value(mine)}'")
        return args_inequivalence(self.arguments, arguments, EQUIVALENCE_ARGUMENTS, resource)
