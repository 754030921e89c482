"""The routing core: vhosts, users, the message log and event hooks. Synchronous and deterministic."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ..clock import Clock, VirtualClock
from ..errors import AmqpError, NotAllowed
from .message import Message, parse_expiration
from .queue import Queue
from .vhost import VHost

#: What a publish hook does to a message: drop it, or delay it by that many seconds on the clock.
FaultAction = Literal["drop"] | float
#: What a message fault did to a logged message.
FaultOutcome = Literal["dropped", "delayed"]

EVENTS = ("publish", "route", "deliver", "connect", "disconnect", "client", "queue_deleted", "dropped")


class DeliveryRecord:
    """One delivery of a logged message: compares as ``(queue, client_id)``, and also says whether it was a
    redelivery and how it was settled: ``outcome`` is None while unacknowledged, ``"auto"`` for a no-ack
    delivery, ``"ack"``, ``"requeue"`` or ``"reject"``.

    It behaves as that pair (equality, hashing, unpacking, indexing) without being a tuple: a tuple subclass
    carries an instance dictionary for the two extra fields, which costs on every delivery.
    """

    __slots__ = ("queue", "client_id", "redelivered", "outcome")

    def __init__(self, queue: str, client_id: str | None, redelivered: bool = False,
                 outcome: str | None = None) -> None:
        self.queue = queue
        self.client_id = client_id
        self.redelivered = redelivered
        self.outcome = outcome

    def _pair(self) -> tuple[str, str | None]:
        return (self.queue, self.client_id)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DeliveryRecord):
            return self._pair() == other._pair()
        if isinstance(other, tuple):
            return self._pair() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._pair())

    def __iter__(self) -> Iterator[str | None]:
        return iter(self._pair())

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> str | None:
        return self._pair()[index]

    def __repr__(self) -> str:
        return repr(self._pair())


@dataclass(eq=False, slots=True)
class LoggedMessage:
    """One accepted publish, as the message log keeps it."""

    seq: int
    time: float
    protocol: str  # "mqtt", "mqtt-will", "api" or "dead-letter"
    client_id: str | None
    vhost: str
    exchange: str
    routing_key: str
    body: bytes
    properties: dict[str, Any]
    queues: tuple[str, ...]
    deliveries: list[DeliveryRecord] = field(default_factory=list)  # compare as (queue, client id)
    # Queues it was routed to that refused it (``x-overflow: reject-publish``): a publisher confirm's nack.
    refused: tuple[str, ...] = ()
    # Fault injection (see Broker.publish_hooks): "dropped" (never routed) or "delayed" (routed at
    # ``delayed_until`` on the clock; ``pending`` until then).
    fault: FaultOutcome | None = None
    delayed_until: float | None = None
    pending: bool = False

    @property
    def routed(self) -> bool:
        return bool(self.queues)

    @property
    def headers(self) -> dict[str, Any]:
        headers = self.properties.get("headers")
        return headers if isinstance(headers, dict) else {}

    @property
    def topic(self) -> str:
        """The routing key as an MQTT topic (RabbitMQ's ``.`` → ``/``, ``*`` → ``+``)."""
        return self.routing_key.replace("*", "+").replace(".", "/")

    @property
    def payload(self) -> bytes:
        return self.body

    def describe(self) -> str:
        where = ", ".join(self.queues) if self.queues else "unroutable"
        if self.refused:
            where = f"{where if self.queues else 'no queue took it'}; refused by {', '.join(self.refused)}"
        if self.fault == "dropped":
            where = "dropped (fault injection)"
        elif self.fault == "delayed":
            due = f"delayed to t={self.delayed_until:.3f}"
            where = f"{due}, not routed yet" if self.pending else f"{where} ({due})"
        who = f"{self.protocol}:{self.client_id}" if self.client_id else self.protocol
        body = self.body if len(self.body) <= 60 else self.body[:57] + b"..."
        return (f"#{self.seq} t={self.time:.3f} {who} -> exchange={self.exchange!r} "
                f"routing_key={self.routing_key!r} body={body!r} -> {where}")


class Broker:
    """The model of one RabbitMQ node. Everything here runs on the broker's event loop thread."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        users: dict[str, Any] | None = None,
        vhosts: tuple[str, ...] | list[str] = ("/",),
        log_limit: int | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else VirtualClock()
        # user -> password, or -> {"password": ..., "vhosts": [...]} to limit the vhosts it may use.
        self.users: dict[str, Any] = {}
        self.vhosts: dict[str, VHost] = {}
        # A bounded deque forgets the oldest entry in O(1): trimming a list from the front moved every pointer
        # on each publish once the limit was reached.
        self.log: deque[LoggedMessage] = deque(maxlen=log_limit)
        self._seq = 0
        # A list per event, made once: the hot paths test theirs without a look-up.
        listeners: dict[str, list[Callable[..., Any]]] = {event: [] for event in EVENTS}
        self._listeners = listeners
        self._on_publish, self._on_route = listeners["publish"], listeners["route"]
        self._on_deliver = listeners["deliver"]
        self._wall_offset = time.time() - self.clock.now()
        # Fault injection: each new log entry is shown to these hooks before it is routed. The first one
        # that answers decides: "drop" (never routed) or a number of seconds to delay routing by.
        self.publish_hooks: list[Callable[[LoggedMessage], FaultAction | None]] = []
        self.reset({"guest": "guest"} if users is None else users, vhosts)

    def reset(self, users: dict[str, Any], vhosts: tuple[str, ...] | list[str]) -> None:
        """Empty the node as if it had just started with these users and vhosts: no queue (their timers
        cancelled), exchange, binding, log entry or publish hook is left. Listeners (:meth:`on`) stay."""
        for vh in self.vhosts.values():
            for queue in vh.queues.values():
                queue.on_deleted()
        self.vhosts = {}
        for name in vhosts:
            self.add_vhost(name)
        self.users = dict(users)
        self.log.clear()
        self.publish_hooks.clear()

    # -- vhosts and users -----------------------------------------------------------------------
    def add_vhost(self, name: str) -> VHost:
        if name not in self.vhosts:
            self.vhosts[name] = VHost(self, name)
        return self.vhosts[name]

    def vhost(self, name: str = "/") -> VHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            raise NotAllowed(f"vhost {name} not found")
        return vhost

    def authenticate(self, username: str, password: str | bytes) -> bool:
        if isinstance(password, bytes):
            try:
                password = password.decode()
            except UnicodeDecodeError:
                return False
        entry = self.users.get(username)
        if isinstance(entry, dict):
            entry = entry.get("password")
        return entry is not None and entry == password

    def can_access(self, username: str, vhost: str) -> bool:
        entry = self.users.get(username)
        if isinstance(entry, dict) and entry.get("vhosts") is not None:
            return vhost in entry["vhosts"]
        return True

    def wallclock_seconds(self) -> float:
        """Epoch seconds that move with the broker's clock (for x-death times and timestamps)."""
        return self._wall_offset + self.clock.now()

    # -- events ---------------------------------------------------------------------------------
    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call ``callback`` on every ``event``; returns a function that removes it."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; choose from {', '.join(EVENTS)}")
        self._listeners[event].append(callback)
        return lambda: self._listeners[event].remove(callback) if callback in self._listeners[event] else None

    def emit(self, event: str, *args: Any) -> None:
        listeners = self._listeners[event]
        if listeners:
            for callback in list(listeners):  # a callback may remove itself
                callback(*args)

    # -- publishing -----------------------------------------------------------------------------
    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: dict[str, Any] | None = None,
        *,
        vhost: str = "/",
        protocol: str = "api",
        client_id: str | None = None,
    ) -> LoggedMessage:
        """basic.publish: route and enqueue one message. Refused as RabbitMQ does: NOT_FOUND for a missing
        exchange, ACCESS_REFUSED for an internal one, PRECONDITION_FAILED for a bad ``expiration``."""
        vh = self.vhost(vhost)
        vh.check_publishable(exchange)
        props = dict(properties) if properties else {}
        if props.get("expiration") is not None:
            parse_expiration(props["expiration"])
        message = Message(exchange, routing_key, bytes(body), props)
        return self.publish_message(message, protocol=protocol, client_id=client_id, vhost=vh)

    def publish_built(self, vh: VHost, exchange: str, routing_key: str, body: bytes, properties: dict[str, Any],
                      protocol: str, client_id: str | None) -> LoggedMessage:
        """:meth:`publish` for a protocol session that built ``properties`` itself, without an ``expiration``
        (they are neither copied nor checked), with the vhost at hand: once per message from an MQTT device."""
        if self.vhosts.get(vh.name) is not vh:
            raise NotAllowed(f"vhost {vh.name} not found")  # deleted (or the broker reset) since it was looked up
        vh.check_publishable(exchange)
        return self.publish_message(Message(exchange, routing_key, body, properties), protocol=protocol,
                                    client_id=client_id, vhost=vh)

    def publish_message(
        self,
        message: Message,
        *,
        protocol: str,
        vhost: VHost,
        client_id: str | None = None,
        queues: list[str] | None = None,
    ) -> LoggedMessage:
        targets = vhost.route(message) if queues is None else queues
        self._seq += 1
        logged = LoggedMessage(
            self._seq, self.clock.now(), protocol, client_id, vhost.name, message.exchange,
            message.routing_key, message.body, message.properties, (),
        )
        message.log_id = self._seq
        self.log.append(logged)
        if self._on_publish:  # emit() guarded inline: this is the hot path
            self.emit("publish", logged)
        action = self._publish_fault(logged) if self.publish_hooks else None
        if action is None:
            self._enqueue(logged, message, vhost, targets)
        elif action == "drop":
            logged.fault = "dropped"
            self.emit("route", logged)
        else:
            logged.fault, logged.pending = "delayed", True
            logged.delayed_until = self.clock.now() + float(action)
            self.clock.call_at(logged.delayed_until, self._route_delayed, logged, message, vhost, queues)
        return logged

    def _publish_fault(self, logged: LoggedMessage) -> FaultAction | None:
        for hook in list(self.publish_hooks):  # a hook may remove itself
            action = hook(logged)
            if action is not None:
                return action
        return None

    def _enqueue(self, logged: LoggedMessage, message: Message, vhost: VHost, targets: list[str]) -> None:
        # Record the targets before enqueueing: enqueueing can deliver, and deliveries refer to the entry.
        logged.queues = tuple(targets)
        accepted = vhost.deliver(message, targets)
        if len(accepted) < len(targets):
            logged.queues = tuple(accepted)
            logged.refused = tuple(q for q in targets if q not in accepted)
        logged.pending = False
        if self._on_route:
            self.emit("route", logged)

    def _route_delayed(self, logged: LoggedMessage, message: Message, vhost: VHost,
                       queues: list[str] | None) -> None:
        # Routed with the bindings of the moment it arrives; an exchange deleted meanwhile makes it unroutable.
        try:
            targets = vhost.route(message) if queues is None else queues
        except AmqpError:
            targets = []
        self._enqueue(logged, message, vhost, targets)

    def recent(self, n: int) -> list[LoggedMessage]:
        """The last ``n`` entries of the message log, oldest first, without copying the rest of it."""
        return list(itertools.islice(reversed(self.log), n))[::-1] if n > 0 else []

    def find_logged(self, seq: int) -> LoggedMessage | None:
        if not self.log or seq < self.log[0].seq:
            return None
        index = seq - self.log[0].seq
        return self.log[index] if index < len(self.log) else None

    def record_delivery(self, message: Message, queue: str, client_id: str | None, redelivered: bool = False,
                        no_ack: bool = False) -> DeliveryRecord | None:
        """Note a delivery on the message's log entry; the record is settled later by the channel."""
        log = self.log
        logged = None
        record = None
        if log:
            index = message.log_id - log[0].seq  # find_logged(), inlined: once per delivery
            if 0 <= index < len(log):
                logged = log[index]
                record = DeliveryRecord(queue, client_id, redelivered, "auto" if no_ack else None)
                logged.deliveries.append(record)
        if self._on_deliver:
            self.emit("deliver", logged, queue, client_id)
        return record

    def queues(self, vhost: str = "/") -> dict[str, Any]:
        return dict(self.vhost(vhost).queues)

    # -- restart --------------------------------------------------------------------------------
    def restart(self) -> None:
        """Keep what a RabbitMQ node keeps across a restart; call it once every connection has closed.

        Kept: durable exchanges, durable non-exclusive queues with their persistent messages
        (``delivery_mode`` 2, in order, TTL deadlines unchanged), bindings from a kept exchange to a kept
        queue and the message log (protocols keep their own node-wide state, such as MQTT's retained
        store). Everything else is gone, as after
        ``rabbitmqctl stop_app; start_app``. Kept queues come back as new queue processes with no consumer: the
        ``x-expires`` countdown starts again and the message-TTL timer is armed for the new head.
        """
        for vh in self.vhosts.values():
            gone = {name for name, q in vh.queues.items() if not q.durable or q.exclusive}
            # Transient bindings vanish without triggering auto-delete, as when mnesia's RAM tables are lost.
            lost = {n for n, e in vh.exchanges.items() if not e.durable}
            for exchange in vh.exchanges.values():
                for binding in [b for b in exchange.bindings
                                if (b.destination in gone if b.destination_type == "queue" else b.destination in lost)]:
                    exchange.remove_binding(binding)
            for name in lost:
                del vh.exchanges[name]
            for name in sorted(gone):
                vh.queues.pop(name).on_deleted()
                self.emit("queue_deleted", vh.name, name)
            for name, old in list(vh.queues.items()):
                old.on_deleted()  # cancels its timers
                new = Queue(old.name, vh, durable=True, auto_delete=old.auto_delete, arguments=dict(old.arguments))
                kept = [qm for qm in old.messages if qm.message.persistent]
                new.messages.extend(kept)
                new.ready_bytes = sum(qm.size for qm in kept)
                new._seq = old._seq
                vh.queues[name] = new
        # Only now, with every queue in place: expiring a head may dead-letter into another kept queue.
        for vh in self.vhosts.values():
            for queue in list(vh.queues.values()):
                queue._after_change()
