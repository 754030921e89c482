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
        return self.messages

    @property
    def consumer_count(self) -> int:
        return self.consumers


@dataclass(frozen=True)
class ExchangeInfo:
    name: str
    vhost: str
    type: str
    durable: bool
    auto_delete: bool
    internal: bool
    arguments: dict[str, Any]


@dataclass(frozen=True)
class BindingInfo:
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
    subscriptions: dict[str, int]
    details: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["details"][name]
        except KeyError:
            raise AttributeError(name) from None


class ClientList(list[ClientInfo]):
    def get(self, client_id: str) -> ClientInfo | None:
        return next((c for c in self if c.client_id == client_id), None)

    def ids(self) -> list[str | None]:
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
        """Entries matching every criterion; see :func:`message_matches` for the names."""
        check_criteria(criteria)
        return MessageLog([m for m in self._entries if matches(m, criteria)])

    @property
    def bodies(self) -> list[bytes]:
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
        """The ready messages of a queue, head first, without consuming them."""
        return self._call(lambda: self._node.model.vhost(self._vhost(vhost)).queue(queue).peek())

    def retained(self, *, vhost: str | None = None) -> dict[str, bytes]:
        """MQTT retained messages: topic -> payload."""
        def run() -> dict[str, bytes]:
            name = self._node.model.vhost(self._vhost(vhost)).name  # NOT_FOUND for an unknown vhost
            return {t: m.body for t, (m, _) in self._node.state(MqttState).retained_in(name).items()}

        return self._call(run)

    # views: the properties show the broker's default vhost; the ``*_in(vhost)`` methods any other
    @property
    def queues(self) -> dict[str, QueueInfo]:
        """Queues of the broker's vhost, by name (a fresh snapshot on each access)."""
        return self.queues_in(None)

    def queues_in(self, vhost: str | None) -> dict[str, QueueInfo]:
        """Queues of ``vhost`` (None: the broker's), by name."""

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
        """Exchanges of the broker's vhost, by name."""
        return self.exchanges_in(None)

    def exchanges_in(self, vhost: str | None) -> dict[str, ExchangeInfo]:
        def run() -> dict[str, ExchangeInfo]:
            vh = self._node.model.vhost(self._vhost(vhost))
            return {e.name: ExchangeInfo(e.name, vh.name, e.type, e.durable, e.auto_delete, e.internal,
                                         dict(e.arguments)) for e in vh.exchanges.values()}

        return self._call(run)

    @property
    def bindings(self) -> list[BindingInfo]:
        """Bindings of the broker's vhost, the default exchange's implicit ones included."""
        return self.bindings_in(None)

    def bindings_in(self, vhost: str | None) -> list[BindingInfo]:
        def run() -> list[BindingInfo]:
            vh = self._node.model.vhost(self._vhost(vhost))
            return [BindingInfo(vh.name, b.source, b.destination, b.routing_key, b.args) for b in vh.bindings()]

        return self._call(run)

    @property
    def clients(self) -> ClientList:
        """Live connections of every protocol (a fresh snapshot on each access)."""
        return self._call(lambda: client_list(self._node))

    @property
    def messages(self) -> MessageLog:
        """Every message the broker accepted (a snapshot), with where it was routed and delivered.

        Also readable after the broker stopped. Filter it with ``.filter(**criteria)``.
        """
        return self._read(lambda: MessageLog(list(self._node.model.log)))

