"""Queues: ready messages, consumers with prefetch, TTLs, length limits, expiry and dead-lettering."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..clock import Clock, TimerHandle
from ..errors import PreconditionFailed
from .message import Delivery, Message, parse_expiration

if TYPE_CHECKING:
    from .channel import Channel
    from .vhost import VHost

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
MAX_PRIORITY = 255

#: Arguments RabbitMQ 3.10 refuses on a classic queue ("... of queue type rabbit_classic_queue").
CLASSIC_INVALID_ARGUMENTS = (
    "x-delivery-limit", "x-max-in-memory-length", "x-max-in-memory-bytes", "x-max-age",
    "x-quorum-initial-group-size", "x-stream-max-segment-size-bytes", "x-initial-cluster-size",
    "x-queue-leader-locator", "x-dead-letter-strategy",
)
#: Arguments compared when a classic queue is redeclared, in RabbitMQ's order (any other may differ freely).
EQUIVALENCE_ARGUMENTS = (
    "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-length",
    "x-max-length-bytes", "x-max-priority", "x-overflow", "x-queue-mode", "x-single-active-consumer",
    "x-queue-master-locator",
)


def amqp_type(value: Any) -> str:
    """The AMQP field type a client would send ``value`` as, by RabbitMQ's name for it (for error texts)."""
    if value is None:
        return "void"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, (str, bytes)):
        return "longstr"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _type_class(value: Any) -> str:
    """``rabbit_misc:type_class/1``: all integer types compare as one class."""
    kind = amqp_type(value)
    return "int" if kind in ("signedint", "long") else kind


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def args_inequivalence(current: dict[str, Any], received: dict[str, Any], keys: tuple[str, ...],
                       resource: str) -> str | None:
    """``rabbit_misc:assert_args_equivalence/4``: the error text for the first of ``keys`` that differs."""
    for key in keys:
        if key not in current and key not in received:
            continue
        if key in current and key in received:
            mine, theirs = current[key], received[key]
            if _type_class(mine) == _type_class(theirs) and mine == theirs:
                continue
            return (f"inequivalent arg '{key}' for {resource}: received '{format_value(theirs)}' "
                    f"but current is '{format_value(mine)}'")
        return (f"inequivalent arg '{key}' for {resource}: received {_describe(received, key)} "
                f"but current is {_describe(current, key)}")
    return None


def _describe(arguments: dict[str, Any], key: str) -> str:
    if key not in arguments:
        return "none"
    value = arguments[key]
    return f"the value '{format_value(value)}' of type '{amqp_type(value)}'"


def _check_int(value: Any) -> str | None:
    if amqp_type(value) not in ("signedint", "long"):
        return f'"expected integer, got {amqp_type(value)}"'
    return None


def _check_non_negative(value: Any) -> str | None:
    problem = _check_int(value)
    if problem is None and value < 0:
        problem = f"{{value_negative,{value}}}"
    return problem


def _check_expires(value: Any) -> str | None:
    problem = _check_non_negative(value)
    if problem is None and value == 0:
        problem = "{value_zero,0}"
    return problem


def _check_priority(value: Any) -> str | None:
    problem = _check_non_negative(value)
    if problem is None and value > MAX_PRIORITY:
        problem = f"{{max_value_exceeded,{value}}}"
    return problem


def _check_str(value: Any) -> str | None:
    return None if isinstance(value, str) else f"{{unacceptable_type,{amqp_type(value)}}}"


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{{unacceptable_type,{amqp_type(value)}}}"


def _check_overflow(value: Any) -> str | None:
    return _check_str(value) or (None if value in OVERFLOW_MODES else "invalid_overflow")


def _check_queue_mode(value: Any) -> str | None:
    return _check_str(value) or (None if value in ("default", "lazy") else f"\"unsupported queue mode '{value}'\"")


def _check_queue_type(value: Any) -> str | None:
    problem = _check_str(value)
    if problem is None and value not in ("classic", "quorum", "stream"):
        problem = f"\"unsupported queue type '{value}'\""
    return problem


#: ``rabbit_amqqueue:declare_args/0``: the declare-time checks, in RabbitMQ's order.
_ARGUMENT_CHECKS: tuple[tuple[str, Callable[[Any], str | None]], ...] = (
    ("x-expires", _check_expires),
    ("x-message-ttl", _check_non_negative),
    ("x-dead-letter-exchange", _check_str),
    ("x-dead-letter-routing-key", _check_str),
    ("x-max-length", _check_non_negative),
    ("x-max-length-bytes", _check_non_negative),
    ("x-max-priority", _check_priority),
    ("x-overflow", _check_overflow),
    ("x-queue-mode", _check_queue_mode),
    ("x-single-active-consumer", _check_bool),
    ("x-queue-type", _check_queue_type),
)


def check_queue_arguments(arguments: dict[str, Any], name: str, vhost: str) -> None:
    """RabbitMQ's declare-time validation of a new classic queue's arguments, with its error texts."""
    resource = f"queue '{name}' in vhost '{vhost}'"
    dlx = arguments.get("x-dead-letter-exchange")
    if dlx is not None and not isinstance(dlx, str):
        # rabbit_channel checks the DLX's type before anything else.
        raise PreconditionFailed(f"invalid type '{amqp_type(dlx)}' for arg 'x-dead-letter-exchange' in {resource}")
    for key in CLASSIC_INVALID_ARGUMENTS:
        if key in arguments:
            raise PreconditionFailed(f"invalid arg '{key}' for {resource} of queue type rabbit_classic_queue")
    for key, check in _ARGUMENT_CHECKS:
        if key not in arguments:
            continue
        problem = check(arguments[key])
        if problem is None and key == "x-dead-letter-routing-key" and "x-dead-letter-exchange" not in arguments:
            problem = "routing_key_but_no_dlx_defined"
        if problem is not None:
            raise PreconditionFailed(f"invalid arg '{key}' for {resource}: {problem}")
    if arguments.get("x-queue-type", "classic") != "classic":
        # Quorum and stream queues have other rules (durable only, no exclusivity, ...); fakebroker models
        # classic queues, so refuse loudly rather than pretend.
        raise PreconditionFailed(f"fakebroker models classic queues only; x-queue-type "
                                 f"'{arguments['x-queue-type']}' for queue '{name}' is not supported")


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

    def has_capacity(self) -> bool:
        return self.no_ack or not self.prefetch or self.unacked < self.prefetch


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
        # The rotation, as rabbit_queue_consumers keeps it: the next consumer to try first; a consumer goes to
        # the back after each delivery, and leaves it when found with a full window.
        self._active: deque[Consumer] = deque()
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
        if self._active:
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
        active = self._active
        while active and not self.deleted:
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
            active = self._active
            while self.messages and active and not self.deleted:
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
        tag = channel.next_delivery_tag()
        if not consumer.no_ack:
            consumer.unacked += 1
            self.unacked += 1
            channel.track(tag, qm, self, consumer)
        delivery = Delivery(qm.message, self.name, tag, qm.redelivered, consumer.tag)
        self.vhost.broker.record_delivery(qm.message, self.name, consumer.client_id)
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
        if not no_ack:
            self.unacked += 1
            channel.track(tag, qm, self, None)
        self.vhost.broker.record_delivery(qm.message, self.name, channel.client_id)
        if self._ttl_timer is not None or (messages and messages[0].expires_at is not None):
            self._after_change()
        return Delivery(qm.message, self.name, tag, qm.redelivered, None, len(messages))

    # -- acknowledgements (called by the channel) ---------------------------------------------
    def settle(self, qm: QueuedMessage, consumer: Consumer | None, outcome: str) -> None:
        """``outcome``: "ack", "requeue" or "reject" (dead-letter when configured)."""
        self.unacked -= 1
        if consumer is not None:
            consumer.unacked -= 1
            if consumer.blocked and consumer.has_capacity() and consumer in self.consumers:
                consumer.blocked = False
                self._active.append(consumer)
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
        self._after_change()

    # -- consumers ----------------------------------------------------------------------------
    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self._active.append(consumer)
        self._had_consumer = True
        self._cancel_expires()
        self.dispatch()
        self._after_change()

    def remove_consumer(self, consumer: Consumer) -> None:
        self.detach_consumer(consumer)
        self.consumers_changed()

    def detach_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            if consumer.blocked:
                consumer.blocked = False
            else:
                self._active.remove(consumer)

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
        self._active.clear()

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
