"""Read-only views of a running broker: queues, exchanges, bindings, clients and the message log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from ..model import LoggedMessage, Message
from ..node import Node
from ..observe import (
    check_criteria,
    matches,
)
from ..protocols.mqtt.state import MqttState
from .core import BrokerCore


# -- read-only views ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueInfo:
    """A queue as :attr:`~fakebroker.ThreadedBroker.queues` shows it: ``messages`` ready, ``unacked``, ``consumers``."""

    name: str
    vhost: str
    durable: bool
    auto_delete: bool
    exclusive: bool
    arguments: dict[str, Any]
    messages: int  # ready messages
    unacked: int
    consumers: int

    @property
    def message_count(self) -> int:
        """``messages``, by its name in AMQP's queue.declare-ok."""
        return self.messages

    @property
    def consumer_count(self) -> int:
        """``consumers``, by its name in AMQP's queue.declare-ok."""
        return self.consumers


@dataclass(frozen=True)
class ExchangeInfo:
    """An exchange as :attr:`~fakebroker.ThreadedBroker.exchanges` shows it."""

    name: str
    vhost: str
    type: str
    durable: bool
    auto_delete: bool
    internal: bool
    arguments: dict[str, Any]


@dataclass(frozen=True)
class BindingInfo:
    """A binding from exchange ``source`` to queue ``destination``."""

    vhost: str
    source: str
    destination: str
    routing_key: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ClientInfo:
    """A live connection. Protocol-specific fields (keepalive, will, clean_session, ...) are in ``details``."""

    id: int
    protocol: str
    client_id: str | None
    user: str | None
    vhost: str | None
    peer: tuple[str, int]
    listener: str
    connected_at: float
    stalled: bool
    subscriptions: dict[str, Any]  # MQTT: filter -> QoS; STOMP: subscription id -> destination
    details: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["details"][name]
        except KeyError:
            raise AttributeError(name) from None


class ClientList(list[ClientInfo]):
    """The live connections, a list of :class:`ClientInfo` that can be searched by client id."""

    def get(self, client_id: str) -> ClientInfo | None:
        """The first connection of ``client_id``, or None.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> broker.clients.get("device-1").protocol, broker.clients.get("device-2")
            ('mqtt', None)
        """
        return next((c for c in self if c.client_id == client_id), None)

    def ids(self) -> list[str | None]:
        """The client ids, in connection order (None for a connection that has not identified itself).

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> broker.clients.ids()
            ['device-1']
        """
        return [c.client_id for c in self]


class MessageLog(Sequence[LoggedMessage]):
    """A snapshot of the message log, oldest first, that can be filtered."""

    def __init__(self, entries: list[LoggedMessage]) -> None:
        self._entries = entries

    @overload
    def __getitem__(self, index: int) -> LoggedMessage: ...
    @overload
    def __getitem__(self, index: slice) -> MessageLog: ...
    def __getitem__(self, index: int | slice) -> LoggedMessage | MessageLog:
        if isinstance(index, slice):
            return MessageLog(self._entries[index])
        return self._entries[index]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return "MessageLog([\n" + "".join(f"  {m.describe()}\n" for m in self._entries) + "])"

    def filter(self, **criteria: Any) -> MessageLog:
        """Entries matching every criterion; see :func:`message_matches` for the names.

        Examples:
            >>> for key in ("sensors.temp", "sensors.humidity", "alerts.fire"):
            ...     _ = broker.publish("amq.topic", key, key.encode())
            >>> len(broker.messages.filter(topic="sensors/#"))
            2
        """
        check_criteria(criteria)
        return MessageLog([m for m in self._entries if matches(m, criteria)])

    @property
    def bodies(self) -> list[bytes]:
        """The entries' bodies, oldest first.

        Examples:
            >>> for key in ("sensors.temp", "sensors.humidity"):
            ...     _ = broker.publish("amq.topic", key, key.encode())
            >>> broker.messages.bodies
            [b'sensors.temp', b'sensors.humidity']
        """
        return [m.body for m in self._entries]


def message_matches(m: LoggedMessage, **criteria: Any) -> bool:
    """Whether ``m`` meets every criterion: ``topic`` (an MQTT filter, ``+``/``#`` wildcards, matched against
    the routing key as RabbitMQ's MQTT plugin maps it), ``routing_key``, ``exchange``, ``queue`` (one it was
    routed to), ``protocol``, ``client_id``, ``vhost``, ``payload``/``body`` (bytes, str or a predicate),
    ``headers`` (a subset), ``delivered_to`` (a client id that received it), ``routed``, ``fault``."""
    check_criteria(criteria)
    return matches(m, criteria)



def client_list(node: Node) -> ClientList:
    """The node's live connections as :class:`ClientInfo`; on the node's loop."""
    out = ClientList()
    for conn in node.runtime.connections.values():
        d = node.describe_client(conn)
        out.append(ClientInfo(
            d.pop("id"), d.pop("protocol"), d.pop("client_id"), d.pop("user"), d.pop("vhost", None),
            d.pop("peer"), d.pop("listener"), d.pop("connected_at"), d.pop("stalled"),
            d.pop("subscriptions", {}), d))
    return out


class Views(BrokerCore):
    """Snapshots of the broker's state, taken on its loop."""

    def peek(self, queue: str, *, vhost: str | None = None) -> list[Message]:
        """The ready messages of a queue, head first, without consuming them.

        Examples:
            >>> broker.declare_queue("jobs")
            'jobs'
            >>> _ = broker.publish("", "jobs", b"job 1")
            >>> [m.body for m in broker.peek("jobs")]
            [b'job 1']
        """
        return self._call(lambda: self._node.model.vhost(self._vhost(vhost)).queue(queue).peek())

    def retained(self, *, vhost: str | None = None) -> dict[str, bytes]:
        """MQTT retained messages of the vhost: topic -> payload.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.publish("status/device-1", b"online", qos=1, retain=True)
            >>> broker.retained()
            {'status/device-1': b'online'}
        """
        def run() -> dict[str, bytes]:
            name = self._node.model.vhost(self._vhost(vhost)).name  # NOT_FOUND for an unknown vhost
            return {t: m.body for t, (m, _) in self._node.state(MqttState).retained_in(name).items()}

        return self._call(run)

    # views: the properties show the broker's default vhost; the ``*_in(vhost)`` methods any other
    @property
    def queues(self) -> dict[str, QueueInfo]:
        """Queues of the broker's vhost, by name, as :class:`QueueInfo` (a fresh snapshot on each access).

        Examples:
            >>> broker.declare_queue("jobs")
            'jobs'
            >>> _ = broker.publish("", "jobs", b"job 1")
            >>> broker.queues["jobs"].messages
            1
        """
        return self.queues_in(None)

    def queues_in(self, vhost: str | None) -> dict[str, QueueInfo]:
        """Queues of ``vhost`` (None: the broker's), by name.

        Examples:
            >>> with fakebroker.start(vhosts=("/", "tenant-a")) as tenants:
            ...     _ = tenants.declare_queue("jobs", vhost="tenant-a")
            ...     print(list(tenants.queues_in("tenant-a")), list(tenants.queues))
            ['jobs'] []
        """

        def run() -> dict[str, QueueInfo]:
            vh = self._node.model.vhost(self._vhost(vhost))
            return {
                q.name: QueueInfo(q.name, vh.name, q.durable, q.auto_delete, q.exclusive, dict(q.arguments),
                                  q.message_count, q.unacked, q.consumer_count)
                for q in vh.queues.values()
            }

        return self._call(run)

    @property
    def exchanges(self) -> dict[str, ExchangeInfo]:
        """Exchanges of the broker's vhost, by name, as :class:`ExchangeInfo` (``amq.*`` and the default
        exchange ``""`` included).

        Examples:
            >>> broker.exchanges["amq.topic"].type
            'topic'
        """
        return self.exchanges_in(None)

    def exchanges_in(self, vhost: str | None) -> dict[str, ExchangeInfo]:
        """Exchanges of ``vhost`` (None: the broker's), by name.

        Examples:
            >>> with fakebroker.start(vhosts=("/", "tenant-a")) as tenants:
            ...     tenants.declare_exchange("events", "fanout", vhost="tenant-a")
            ...     print("events" in tenants.exchanges_in("tenant-a"), "events" in tenants.exchanges)
            True False
        """
        def run() -> dict[str, ExchangeInfo]:
            vh = self._node.model.vhost(self._vhost(vhost))
            return {e.name: ExchangeInfo(e.name, vh.name, e.type, e.durable, e.auto_delete, e.internal,
                                         dict(e.arguments)) for e in vh.exchanges.values()}

        return self._call(run)

    @property
    def bindings(self) -> list[BindingInfo]:
        """Bindings of the broker's vhost as :class:`BindingInfo`, the default exchange's implicit ones included.

        Examples:
            >>> broker.declare_queue("audit")
            'audit'
            >>> broker.bind("audit", "amq.topic", "sensors.#")
            >>> [(b.source, b.routing_key) for b in broker.bindings if b.destination == "audit"]
            [('', 'audit'), ('amq.topic', 'sensors.#')]
        """
        return self.bindings_in(None)

    def bindings_in(self, vhost: str | None) -> list[BindingInfo]:
        """Bindings of ``vhost`` (None: the broker's).

        Examples:
            >>> with fakebroker.start(vhosts=("/", "tenant-a")) as tenants:
            ...     _ = tenants.declare_queue("audit", vhost="tenant-a")
            ...     tenants.bind("audit", "amq.topic", "#", vhost="tenant-a")
            ...     print([b.routing_key for b in tenants.bindings_in("tenant-a") if b.source == "amq.topic"])
            ['#']
        """
        def run() -> list[BindingInfo]:
            vh = self._node.model.vhost(self._vhost(vhost))
            return [BindingInfo(vh.name, b.source, b.destination, b.routing_key, b.args) for b in vh.bindings()]

        return self._call(run)

    @property
    def clients(self) -> ClientList:
        """Live connections of every protocol as :class:`ClientInfo`, oldest first (a fresh snapshot on each
        access); ``.get(client_id)`` finds one, ``.ids()`` lists the client ids.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1", keepalive=30)
            >>> device.connect()
            (False, 0)
            >>> broker.clients.ids()
            ['device-1']
            >>> broker.clients.get("device-1").keepalive
            30
        """
        return self._call(lambda: client_list(self._node))

    @property
    def messages(self) -> MessageLog:
        """Every message the broker accepted (a snapshot), with where it was routed and delivered.

        Also readable after the broker stopped. Filter it with ``.filter(**criteria)`` (the criteria of
        :meth:`assert_published`).

        Examples:
            >>> _ = broker.publish("amq.topic", "sensors.temp", b"21.5")
            >>> broker.messages.filter(topic="sensors/#").bodies
            [b'21.5']
        """
        return self._read(lambda: MessageLog(list(self._node.model.log)))

