"""The public face of a running broker: :func:`start` (threaded) and :func:`serve` (inside an anyio loop).

Both give an object with the same synchronous methods. The broker's state lives on its event loop; a
:class:`ThreadedBroker` reaches it through anyio's blocking portal, an :class:`AsyncBroker` calls straight in
because the caller already is on that loop.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import anyio
import anyio.from_thread

from .clock import Clock, VirtualClock
from .config import Options
from .model import Delivery, LoggedMessage, Message
from .model.message import check_properties
from .model.topic import topic_matches
from .node import Node
from .protocols.mqtt.profile import to_amqp
from .server.runtime import Address, Connection

T = TypeVar("T")


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
        return MessageLog([m for m in self._entries if message_matches(m, **criteria)])

    @property
    def bodies(self) -> list[bytes]:
        return [m.body for m in self._entries]


def message_matches(
    m: LoggedMessage,
    *,
    topic: str | None = None,
    routing_key: str | None = None,
    exchange: str | None = None,
    queue: str | None = None,
    protocol: str | None = None,
    client_id: str | None = None,
    vhost: str | None = None,
    body: bytes | str | None = None,
    payload: Callable[[bytes], bool] | bytes | str | None = None,
    delivered_to: str | None = None,
    routed: bool | None = None,
) -> bool:
    """``topic`` is an MQTT filter (``+``/``#`` wildcards) matched against the routing key as RabbitMQ's MQTT
    plugin maps it; ``queue`` a queue the message was routed to; ``delivered_to`` a client id that received
    it; ``payload``/``body`` bytes, str (UTF-8) or a predicate on the body."""
    if topic is not None and not topic_matches(to_amqp(topic), m.routing_key):
        return False
    if routing_key is not None and m.routing_key != routing_key:
        return False
    if exchange is not None and m.exchange != exchange:
        return False
    if queue is not None and queue not in m.queues:
        return False
    if protocol is not None and m.protocol != protocol:
        return False
    if client_id is not None and m.client_id != client_id:
        return False
    if vhost is not None and m.vhost != vhost:
        return False
    if routed is not None and m.routed != routed:
        return False
    if delivered_to is not None and all(c != delivered_to for _, c in m.deliveries):
        return False
    for wanted in (body, payload):
        if wanted is None:
            continue
        if callable(wanted):
            if not wanted(m.body):
                return False
        elif m.body != (wanted.encode() if isinstance(wanted, str) else wanted):
            return False
    return True


# -- the API shared by both faces ---------------------------------------------------------------------
class BrokerAPI:
    """Methods every broker object has. Errors are :mod:`fakebroker.errors` exceptions with RabbitMQ's text."""

    _node: Node

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        raise NotImplementedError

    # addresses
    @property
    def options(self) -> Options:
        return self._node.options

    @property
    def addresses(self) -> dict[str, Address]:
        return self._node.addresses

    def _address(self, name: str) -> Address:
        try:
            return self._node.addresses[name]
        except KeyError:
            raise AttributeError(f"the {name} listener is not enabled on this broker") from None

    @property
    def mqtt(self) -> Address:
        return self._address("mqtt")

    @property
    def web_mqtt_url(self) -> str:
        host, port = self._address("web_mqtt")
        return f"ws://{host}:{port}/ws"

    # model operations
    def _vhost(self, vhost: str | None) -> str:
        return self._node.options.vhost if vhost is None else vhost

    def declare_queue(
        self,
        name: str = "",
        *,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        passive: bool = False,
        vhost: str | None = None,
    ) -> str:
        """queue.declare with AMQP's defaults; returns the name (generated ``amq.gen-…`` for ``""``)."""

        def run() -> str:
            vh = self._node.model.vhost(self._vhost(vhost))
            return vh.declare_queue(name, durable=durable, exclusive=exclusive, auto_delete=auto_delete,
                                    arguments=arguments, passive=passive, owner=self._node.api_owner).name

        return self._call(run)

    def declare_exchange(
        self,
        name: str,
        type: str = "direct",
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
        passive: bool = False,
        vhost: str | None = None,
    ) -> None:
        def run() -> None:
            self._node.model.vhost(self._vhost(vhost)).declare_exchange(
                name, type, durable=durable, auto_delete=auto_delete, internal=internal, arguments=arguments,
                passive=passive)

        self._call(run)

    def bind(self, queue: str, exchange: str, routing_key: str = "", arguments: dict[str, Any] | None = None,
             *, vhost: str | None = None) -> None:
        self._call(lambda: self._node.model.vhost(self._vhost(vhost)).bind(
            queue, exchange, routing_key, arguments, owner=self._node.api_owner))

    def unbind(self, queue: str, exchange: str, routing_key: str = "", arguments: dict[str, Any] | None = None,
               *, vhost: str | None = None) -> None:
        self._call(lambda: self._node.model.vhost(self._vhost(vhost)).unbind(
            queue, exchange, routing_key, arguments, owner=self._node.api_owner))

    def delete_queue(self, name: str, *, if_unused: bool = False, if_empty: bool = False,
                     vhost: str | None = None) -> int:
        """queue.delete; returns how many messages were in it."""
        return self._call(lambda: self._node.model.vhost(self._vhost(vhost)).delete_queue(
            name, if_unused, if_empty))

    def delete_exchange(self, name: str, *, if_unused: bool = False, vhost: str | None = None) -> None:
        self._call(lambda: self._node.model.vhost(self._vhost(vhost)).delete_exchange(name, if_unused))

    def purge(self, queue: str, *, vhost: str | None = None) -> int:
        return self._call(lambda: self._node.model.vhost(self._vhost(vhost)).queue(queue).purge())

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str = b"",
        properties: dict[str, Any] | None = None,
        *,
        vhost: str | None = None,
    ) -> LoggedMessage:
        """basic.publish from the Python API; returns the message log entry (``.queues`` says where it went)."""
        data = body.encode() if isinstance(body, str) else bytes(body)
        props = check_properties(properties)
        return self._call(lambda: self._node.model.publish(
            exchange, routing_key, data, props, vhost=self._vhost(vhost), protocol="api"))

    def get(self, queue: str, *, auto_ack: bool = True, vhost: str | None = None) -> Delivery | None:
        """basic.get: the head message (removed when ``auto_ack``), or None when the queue is empty."""
        return self._call(lambda: self._node.api_channel(self._vhost(vhost)).get(queue, no_ack=auto_ack))

    def ack(self, delivery: Delivery, *, vhost: str | None = None) -> None:
        self._call(lambda: self._node.api_channel(self._vhost(vhost)).ack(delivery.delivery_tag))

    def nack(self, delivery: Delivery, *, requeue: bool = True, vhost: str | None = None) -> None:
        self._call(lambda: self._node.api_channel(self._vhost(vhost)).nack(delivery.delivery_tag,
                                                                             requeue=requeue))

    def peek(self, queue: str, *, vhost: str | None = None) -> list[Message]:
        """The ready messages of a queue, head first, without consuming them."""
        return self._call(lambda: self._node.model.vhost(self._vhost(vhost)).queue(queue).peek())

    def retained(self, *, vhost: str | None = None) -> dict[str, bytes]:
        """MQTT retained messages: topic -> payload."""
        return self._call(lambda: {t: m.body for t, (m, _) in self._node.model.vhost(
            self._vhost(vhost)).retained.items()})

    # views
    @property
    def queues(self) -> dict[str, QueueInfo]:
        """Queues of the broker's vhost, by name (a fresh snapshot on each access)."""
        return self._call(self._queues)

    def _queues(self, vhost: str | None = None) -> dict[str, QueueInfo]:
        vh = self._node.model.vhost(self._vhost(vhost))
        return {
            q.name: QueueInfo(q.name, vh.name, q.durable, q.auto_delete, q.exclusive, dict(q.arguments),
                              q.message_count, q.unacked, q.consumer_count)
            for q in vh.queues.values()
        }

    @property
    def exchanges(self) -> dict[str, ExchangeInfo]:
        def run() -> dict[str, ExchangeInfo]:
            vh = self._node.model.vhost(self._vhost(None))
            return {e.name: ExchangeInfo(e.name, vh.name, e.type, e.durable, e.auto_delete, e.internal,
                                         dict(e.arguments)) for e in vh.exchanges.values()}

        return self._call(run)

    @property
    def bindings(self) -> list[BindingInfo]:
        def run() -> list[BindingInfo]:
            vh = self._node.model.vhost(self._vhost(None))
            return [BindingInfo(vh.name, b.source, b.destination, b.routing_key, b.args) for b in vh.bindings()]

        return self._call(run)

    @property
    def clients(self) -> ClientList:
        def run() -> ClientList:
            out = ClientList()
            for conn in self._node.runtime.connections.values():
                d = self._node.describe_client(conn)
                out.append(ClientInfo(
                    d.pop("id"), d.pop("protocol"), d.pop("client_id"), d.pop("user"), d.pop("vhost", None),
                    d.pop("peer"), d.pop("listener"), d.pop("connected_at"), d.pop("stalled"),
                    d.pop("subscriptions", {}), d))
            return out

        return self._call(run)

    @property
    def messages(self) -> MessageLog:
        """Every message the broker accepted (a snapshot), with where it was routed and delivered."""
        return self._call(lambda: MessageLog(list(self._node.model.log)))

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call ``callback`` on the broker's loop for each event: publish, route, deliver, connect, disconnect.

        Returns a function that removes the hook. Callbacks must not block.
        """
        return self._call(self._node.model.on, event, callback)

    # faults
    def _connections(self, client_id: str) -> list[Connection]:
        conns = self._node.runtime.find(client_id)
        if not conns:
            known = [c.client_id for c in self._node.runtime.connections.values()]
            raise LookupError(f"no connected client {client_id!r}; connected: {known}")
        return conns


# -- threaded face ----------------------------------------------------------------------------------
class ClockProxy:
    """The broker's clock, reached from another thread."""

    def __init__(self, broker: ThreadedBroker) -> None:
        self._broker = broker

    def now(self) -> float:
        return self._broker._call(self._broker._node.clock.now)

    def advance(self, seconds: float) -> None:
        """Fire every timer due within ``seconds``; returns once their effects are applied and written out."""
        self._broker._call_async(self._broker._advance, seconds)

    def pending(self) -> int:
        return self._broker._call(self._broker._node.clock.pending)

    def __repr__(self) -> str:
        return f"<ClockProxy now={self.now():.3f}>"


class ThreadedBroker(BrokerAPI):
    """A broker running on its own event loop in a background thread; see :func:`start`."""

    def __init__(self, node: Node, portal: anyio.from_thread.BlockingPortal,
                 portal_cm: AbstractContextManager[Any], serve_cm: AbstractContextManager[Node]) -> None:
        self._node = node
        self._portal = portal
        self._portal_cm = portal_cm
        self._serve_cm = serve_cm
        self._loop_thread = node.thread_id
        self.stopped = False

    def _on_loop(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.stopped:
            raise RuntimeError("this broker has been stopped")
        if self._on_loop():
            return fn(*args, **kwargs)
        return self._portal.call(functools.partial(fn, *args, **kwargs))

    def _call_async(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._on_loop():
            raise RuntimeError("this method blocks; call it from the test's thread, not a broker callback")
        return self._portal.call(fn, *args)

    @property
    def clock(self) -> ClockProxy:
        return ClockProxy(self)

    async def _advance(self, seconds: float) -> None:
        clock = self._node.clock
        if not isinstance(clock, VirtualClock):
            raise TypeError("only a virtual clock can be advanced; this broker runs on the wall clock")
        clock.advance(seconds)
        await self._node.runtime.flush()

    def disconnect(self, client_id: str) -> None:
        """Drop the client's TCP connection with no protocol goodbye (its Last Will fires)."""

        async def run() -> None:
            for conn in self._connections(client_id):
                await self._node.runtime.disconnect(conn)

        self._call_async(run)

    def stop(self) -> None:
        if self.stopped:
            return
        try:
            self._serve_cm.__exit__(None, None, None)
        finally:
            self.stopped = True
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> ThreadedBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else ", ".join(f"{k}={v.host}:{v.port}" for k, v in self.addresses.items())
        return f"<fakebroker.ThreadedBroker {state}>"


# -- async face ---------------------------------------------------------------------------------------
class AsyncBroker(BrokerAPI):
    """A broker running in the caller's anyio event loop; see :func:`serve`."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)

    @property
    def clock(self) -> Clock:
        return self._node.clock

    async def advance(self, seconds: float) -> None:
        """Advance the virtual clock and wait until the effects have been written to the sockets."""
        clock = self._node.clock
        if not isinstance(clock, VirtualClock):
            raise TypeError("only a virtual clock can be advanced; this broker runs on the wall clock")
        clock.advance(seconds)
        await self._node.runtime.flush()

    def disconnect(self, client_id: str) -> None:
        """Drop the client's TCP connection with no protocol goodbye (its Last Will fires at once)."""
        for conn in self._connections(client_id):
            conn.abort()

    def __repr__(self) -> str:
        return f"<fakebroker.AsyncBroker {', '.join(f'{k}={v.host}:{v.port}' for k, v in self.addresses.items())}>"


@asynccontextmanager
async def _run_node(options: Options) -> AsyncIterator[Node]:
    node = Node(options)
    node.thread_id = threading.get_ident()
    async with anyio.create_task_group() as tg:
        await node.start(tg)
        try:
            yield node
        finally:
            with anyio.CancelScope(shield=True):
                await node.aclose()
            tg.cancel_scope.cancel()


@asynccontextmanager
async def serve(**options: Any) -> AsyncIterator[AsyncBroker]:
    """Run a broker inside the current anyio event loop (asyncio or trio) for the ``async with`` block."""
    opts = Options.from_kwargs(**options)
    async with _run_node(opts) as node:
        yield AsyncBroker(node)


def start(**options: Any) -> ThreadedBroker:
    """Start a broker on its own event loop thread; returns once every listener accepts connections.

    Use it as a context manager, or call ``.stop()``.
    """
    opts = Options.from_kwargs(**options)
    portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
    portal = portal_cm.__enter__()
    try:
        serve_cm = portal.wrap_async_context_manager(_run_node(opts))
        node = serve_cm.__enter__()
    except BaseException:
        portal_cm.__exit__(*sys.exc_info())
        raise
    return ThreadedBroker(node, portal, portal_cm, serve_cm)
