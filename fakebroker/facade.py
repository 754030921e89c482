"""The public face of a running broker: :func:`start` (threaded) and :func:`serve` (inside an anyio loop).

Both give an object with the same synchronous methods. The broker's state lives on its event loop; a
:class:`ThreadedBroker` reaches it through anyio's blocking portal, an :class:`AsyncBroker` calls straight in
because the caller already is on that loop.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import anyio
import anyio.from_thread

from .clock import Clock, VirtualClock
from .config import Options
from .model import Delivery, LoggedMessage, Message
from .model.message import check_properties
from .node import Node
from .observe import (
    Journal,
    MessageFault,
    MessageTimeout,
    check_criteria,
    explain,
    format_criteria,
    listing,
    matches,
    traffic_report,
)
from .protocols import listener_specs
from .protocols.mqtt.state import MqttState
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

    def _listener_attribute(self, name: str) -> Any:
        """A listener's handle attribute (``mqtt``, ``web_mqtt_url``, ...) as its protocol's spec names it."""
        for spec in listener_specs():
            if spec.attribute == name:
                address = self._address(spec.name)
                return address if spec.url is None else spec.url.format(host=address.host, port=address.port)
            if name in spec.more_urls:
                address = self._address(spec.name)
                return spec.more_urls[name].format(host=address.host, port=address.port)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._listener_attribute(name)

    @property
    def mqtt(self) -> Address:
        """The MQTT listener's ``(host, port)``."""
        return self._listener_attribute("mqtt")  # type: ignore[no-any-return]

    @property
    def web_mqtt_url(self) -> str:
        """MQTT over WebSocket: ``ws://host:port/ws``."""
        return self._listener_attribute("web_mqtt_url")  # type: ignore[no-any-return]

    def listener_urls(self) -> dict[str, str]:
        """Every open listener, by name, as its address or URL text."""
        specs = {spec.name: spec for spec in listener_specs()}
        return {name: specs[name].address_text(a.host, a.port) for name, a in self.addresses.items()}

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
        return self._call(lambda: self._node.model.vhost(self._vhost(vhost)).purge_queue(queue))

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
        def run() -> dict[str, bytes]:
            name = self._node.model.vhost(self._vhost(vhost)).name  # NOT_FOUND for an unknown vhost
            return {t: m.body for t, (m, _) in self._node.state(MqttState).retained_in(name).items()}

        return self._call(run)

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
        """Every message the broker accepted (a snapshot), with where it was routed and delivered.

        Also readable after the broker stopped. Filter it with ``.filter(**criteria)``.
        """
        return self._read(lambda: MessageLog(list(self._node.model.log)))

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call ``callback`` for each broker event; returns a function that removes it.

        Callbacks run on the broker's event loop: for :func:`start`, the broker's own thread (so guard shared
        state, and never call a blocking broker method from one); for :func:`serve`, the caller's loop. They
        must not block. An exception in a callback does not reach the broker: it is kept in
        :attr:`callback_errors` (the pytest fixtures fail the test with it). Events and their arguments:

        - ``publish(entry)``: a message was accepted (a :class:`LoggedMessage`, not routed yet)
        - ``route(entry)``: it was routed (``entry.queues``), or dropped by a message fault (``entry.fault``)
        - ``deliver(entry, queue, client_id)``: handed to a consumer or to ``get`` (``entry`` may be None
          when the log has been trimmed)
        - ``connect(conn)`` / ``disconnect(conn)``: a connection opened / closed (``conn.id``,
          ``conn.protocol``, ``conn.client_id`` (None until the client identified itself), ``conn.peer``)
        - ``queue_deleted(vhost, queue)``; ``dropped(vhost, queue, message, reason)``: a queue discarded a
          message (``expired``, ``maxlen``, ``rejected``; dead-lettered when the queue has a DLX)
        """

        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as exc:  # a test's callback must not break the broker; it is reported instead
                self.callback_errors.append(exc)

        remove = self._call(self._node.model.on, event, guarded)
        # The remover edits the model's listener lists: on the loop too (directly once the broker stopped).
        return lambda: self._read(remove)

    # inspection
    def _setup(self, node: Node, journal: Journal) -> None:
        self._node = node
        self._journal = journal
        #: Exceptions raised by :meth:`on` callbacks, oldest first.
        self.callback_errors: list[Exception] = []

    def _read(self, fn: Callable[[], T]) -> T:
        """Run a read-only ``fn`` on the loop (or directly once the broker has stopped)."""
        return self._call(fn)

    def traffic_report(self, messages: int = 50) -> str:
        """Recent traffic as text: connections opened and closed (with client ids and subscriptions), injected
        faults, connected clients (subscriptions, wills), queues and bindings, and the last ``messages``
        messages with where they were routed and who received them. Also works after the broker stopped."""
        return self._read(lambda: traffic_report(self._node, self._journal, messages))

    def _assert_count(self, what: str, count: int | None, criteria: dict[str, Any]) -> MessageLog:
        __tracebackhide__ = True
        check_criteria(criteria)
        if count is not None and count < 0:
            raise ValueError("count must be >= 0")

        def run() -> tuple[MessageLog, str | None]:
            log = list(self._node.model.log)
            found = [m for m in log if matches(m, criteria)]
            if (count is None and found) or len(found) == count:
                return MessageLog(found), None
            wanted = f"a message {what}" if count is None else f"{count} message(s) {what}"
            headline = f"expected {wanted} matching {format_criteria(criteria)}, found {len(found)}"
            if found:
                headline += ":\n" + listing(found)
            if count is not None and len(found) > count:
                return MessageLog(found), headline
            return MessageLog(found), explain(headline, log, criteria)

        found, error = self._read(run)
        if error is not None:
            raise AssertionError(error)
        return found

    def assert_published(self, count: int | None = None, **criteria: Any) -> MessageLog:
        """Assert that a message matching ``criteria`` was published (exactly ``count`` of them if given).

        Counts every message the broker accepted, including unroutable, dropped and still-delayed ones. Returns
        the matches; on failure the AssertionError lists them, or the near misses and how each one differs.
        It checks what already happened: wait first (:meth:`wait_for_message`) for something still on its way.
        """
        __tracebackhide__ = True
        return self._assert_count("published", count, criteria)

    def assert_not_published(self, **criteria: Any) -> None:
        """Assert that no message matching ``criteria`` was published; the error lists the ones that were."""
        __tracebackhide__ = True
        self._assert_count("published", 0, criteria)

    def assert_delivered(self, client_id: str, count: int | None = None, **criteria: Any) -> MessageLog:
        """Assert that a message matching ``criteria`` was delivered to ``client_id`` (``count`` of them if
        given): handed to one of its subscriptions or consumers, not necessarily acknowledged yet."""
        __tracebackhide__ = True
        return self._assert_count(f"delivered to {client_id!r}", count, {**criteria, "delivered_to": client_id})

    async def _wait(self, count: int, timeout: float, criteria: dict[str, Any]) -> MessageLog:
        """On the loop: wait, driven by the route and deliver hooks, for ``count`` matching log entries."""
        __tracebackhide__ = True
        check_criteria(criteria)
        if count < 1:
            raise ValueError("count must be at least 1")
        model = self._node.model
        found: dict[int, LoggedMessage] = {}
        errors: list[Exception] = []
        done = anyio.Event()

        def consider(entry: LoggedMessage | None, *_: Any) -> None:
            if entry is None or entry.pending or entry.seq in found:
                return
            try:
                matched = matches(entry, criteria)
            except Exception as exc:
                # A predicate in the criteria raised. From a hook it would surface in whoever published (an
                # MQTT client's connection would close for it): end the wait and raise it to the waiter.
                errors.append(exc)
                done.set()
                return
            if not matched:
                return
            found[entry.seq] = entry
            if len(found) >= count:
                done.set()

        for entry in model.log:
            consider(entry)
        if len(found) < count:
            removers = [model.on("route", consider), model.on("deliver", consider)]
            try:
                with anyio.move_on_after(timeout):
                    await done.wait()
            finally:
                for remove in removers:
                    remove()
        if errors:
            raise errors[0]
        matched = sorted(found.values(), key=lambda m: m.seq)
        if len(matched) < count:
            what = "a message" if count == 1 else f"{count} messages"
            headline = (f"timed out after {timeout} s waiting for {what} matching {format_criteria(criteria)}"
                        f"; {len(matched)} matched")
            if matched:
                headline += ":\n" + listing(matched)
            raise MessageTimeout(explain(headline, model.log, criteria))
        # With delivered_to, the bytes are on their way: let them reach the client's socket first.
        await self._node.runtime.flush()
        return MessageLog(matched)

    # faults
    def _connections(self, client_id: str) -> list[Connection]:
        conns = self._node.runtime.find(client_id)
        if not conns:
            known = [c.client_id for c in self._node.runtime.connections.values()]
            raise LookupError(f"no connected client {client_id!r}; connected: {known}")
        return conns

    def stall(self, client_id: str) -> None:
        """Stop reading from and writing to the client's connection, as for a frozen peer or a dead network path.

        Its bytes wait in the socket buffers, PINGREQs included, so its keepalive runs out once the clock
        passes 1.5 x keepalive after its last packet read; :meth:`resume` lets the held bytes through.
        """

        def run() -> None:
            for conn in self._connections(client_id):
                self._node.runtime.stall(conn)
            self._journal.note(f"fault: stall({client_id!r})")

        self._call(run)

    def resume(self, client_id: str) -> None:
        """Undo :meth:`stall`: held bytes are read and written again."""

        def run() -> None:
            for conn in self._connections(client_id):
                self._node.runtime.resume(conn)
            self._journal.note(f"fault: resume({client_id!r})")

        self._call(run)

    def drop_next(self, n: int = 1, **criteria: Any) -> MessageFault:
        """Drop the next ``n`` published messages matching ``criteria`` (checked before routing: ``topic``,
        ``routing_key``, ``exchange``, ``protocol``, ``client_id``, ``vhost``, ``payload``, ``headers``).

        A dropped message is logged with ``fault="dropped"`` and reaches no queue; its publisher still got its
        acknowledgement and a retained message is still stored, as for a message lost inside the broker.
        """
        return self._add_fault("drop", n, criteria)

    def delay_next(self, n: int, seconds: float, **criteria: Any) -> MessageFault:
        """Hold the next ``n`` matching messages for ``seconds`` on the broker's clock, then route them with
        the bindings of that moment (``fault="delayed"``; ``pending`` until then). With the virtual clock they
        are routed by ``clock.advance``."""
        if seconds < 0:
            raise ValueError("the delay cannot be negative")
        return self._add_fault(float(seconds), n, criteria)

    def _add_fault(self, action: str | float, n: int, criteria: dict[str, Any]) -> MessageFault:
        fault = MessageFault(self._node, action, n, criteria, lambda fn: self._call(fn), self.callback_errors)

        def run() -> None:
            self._node.model.publish_hooks.append(fault)
            self._journal.note(f"fault: {fault!r}")

        self._call(run)
        return fault

    async def _advance(self, seconds: float) -> None:
        """On the loop: fire the timers due within ``seconds``, then wait until their bytes are written."""
        clock = self._node.clock
        if not isinstance(clock, VirtualClock):
            raise TypeError("only a virtual clock can be advanced; this broker runs on the wall clock")
        clock.advance(seconds)
        await self._node.runtime.flush()

    async def _restart(self) -> None:
        self._journal.note("fault: restart")
        await self._node.restart()

    async def _refuse(self, refuse: bool) -> None:
        if refuse and self._node.refusing:
            raise RuntimeError("this broker is already refusing connections")
        self._journal.note(f"fault: {'refusing' if refuse else 'accepting'} connections")
        await self._node.refuse(refuse)


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

    def __init__(self, node: Node, journal: Journal, portal: anyio.from_thread.BlockingPortal,
                 portal_cm: AbstractContextManager[Any],
                 serve_cm: AbstractContextManager[tuple[Node, Journal]]) -> None:
        self._portal = portal
        self._portal_cm = portal_cm
        self._serve_cm = serve_cm
        self._loop_thread = node.thread_id
        #: The thread running the broker's event loop (gone once :meth:`stop` returns).
        self.thread = next((t for t in threading.enumerate() if t.ident == node.thread_id), None)
        self.stopped = False
        self._setup(node, journal)

    def _on_loop(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.stopped:
            raise RuntimeError("this broker has been stopped")
        if self._on_loop():
            return fn(*args, **kwargs)
        return self._portal.call(functools.partial(fn, *args, **kwargs))

    def _call_async(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.stopped:
            raise RuntimeError("this broker has been stopped")
        if self._on_loop():
            raise RuntimeError("this method blocks; call it from the test's thread, not a broker callback")
        return self._portal.call(fn, *args)

    def _read(self, fn: Callable[[], T]) -> T:
        # Once stopped, nothing runs on the loop any more: the model can be read directly.
        return fn() if self.stopped else self._call(fn)

    @property
    def clock(self) -> ClockProxy:
        return ClockProxy(self)

    def disconnect(self, client_id: str) -> None:
        """Drop the client's TCP connection with no protocol goodbye (its Last Will fires)."""

        async def run() -> None:
            self._journal.note(f"fault: disconnect({client_id!r})")
            for conn in self._connections(client_id):
                await self._node.runtime.disconnect(conn)

        self._call_async(run)

    def wait_for_message(self, timeout: float = 5.0, **criteria: Any) -> LoggedMessage:
        """Block until a message matching ``criteria`` has been routed, and return its log entry.

        A message already in the log counts. With ``delivered_to=client_id`` it waits until the message was
        delivered to that client, and returns once the bytes are written to its socket. ``timeout`` is in
        real seconds (the virtual clock does not move while waiting). On timeout it raises
        :class:`~fakebroker.observe.MessageTimeout` (an AssertionError and a TimeoutError) listing the
        messages the broker saw instead, closest first, with how each one differs.
        """
        __tracebackhide__ = True
        return self.wait_for_messages(1, timeout, **criteria)[0]

    def wait_for_messages(self, count: int, timeout: float = 5.0, **criteria: Any) -> MessageLog:
        """Like :meth:`wait_for_message`, for at least ``count`` matching messages; returns them all."""
        __tracebackhide__ = True
        try:
            log: MessageLog = self._call_async(self._wait, count, timeout, criteria)
        except MessageTimeout as exc:
            raise MessageTimeout(str(exc)) from None  # raised here, not in the broker's thread
        return log

    def restart(self) -> None:
        """Restart the broker as a RabbitMQ node restart (``rabbitmqctl stop_app; start_app``).

        Every connection drops with no Last Will (RabbitMQ stops its MQTT plugin before anything else); the
        broker comes back on the same ports with durable exchanges, durable queues and their persistent
        messages (``delivery_mode`` 2, which MQTT QoS 1 publishes have), bindings between durable things,
        persistent MQTT sessions and retained messages. Transient queues, exchanges and messages are gone.
        Inside :meth:`refuse_connections` the listeners stay closed until that block ends.
        """
        self._call_async(self._restart)

    @contextmanager
    def refuse_connections(self) -> Iterator[None]:
        """Within the ``with`` block new connections are refused (ECONNREFUSED): the listening sockets are
        closed, as if the broker were down. Open connections stay. On exit the broker listens again on the
        same ports."""
        self._call_async(self._refuse, True)
        try:
            yield
        finally:
            if not self.stopped:
                self._call_async(self._refuse, False)

    def stop(self) -> None:
        if self.stopped:
            return
        if self._on_loop():
            raise RuntimeError("a broker cannot be stopped from its own callbacks; stop it from the test's thread")
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

    def __init__(self, node: Node, journal: Journal) -> None:
        self._setup(node, journal)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)

    @property
    def clock(self) -> Clock:
        return self._node.clock

    async def advance(self, seconds: float) -> None:
        """Advance the virtual clock and wait until the effects have been written to the sockets."""
        await self._advance(seconds)

    def disconnect(self, client_id: str) -> None:
        """Drop the client's TCP connection with no protocol goodbye (its Last Will fires at once)."""
        self._journal.note(f"fault: disconnect({client_id!r})")
        for conn in self._connections(client_id):
            conn.abort()

    async def wait_for_message(self, timeout: float = 5.0, **criteria: Any) -> LoggedMessage:
        """Wait until a message matching ``criteria`` has been routed (see ``ThreadedBroker.wait_for_message``;
        ``timeout`` is measured by the event loop's clock)."""
        __tracebackhide__ = True
        return (await self._wait(1, timeout, criteria))[0]

    async def wait_for_messages(self, count: int, timeout: float = 5.0, **criteria: Any) -> MessageLog:
        """Wait for at least ``count`` messages matching ``criteria``; returns them all."""
        __tracebackhide__ = True
        return await self._wait(count, timeout, criteria)

    async def restart(self) -> None:
        """Restart the broker as a RabbitMQ node restart; see ``ThreadedBroker.restart``."""
        await self._restart()

    @asynccontextmanager
    async def refuse_connections(self) -> AsyncIterator[None]:
        """``async with broker.refuse_connections():`` new connections are refused until the block ends."""
        await self._refuse(True)
        try:
            yield
        finally:
            await self._refuse(False)

    def __repr__(self) -> str:
        return f"<fakebroker.AsyncBroker {', '.join(f'{k}={v.host}:{v.port}' for k, v in self.addresses.items())}>"


@asynccontextmanager
async def _run_node(options: Options) -> AsyncIterator[tuple[Node, Journal]]:
    node = Node(options)
    node.thread_id = threading.get_ident()
    journal = Journal(node)
    journal.attach()  # before the listeners open: the journal sees every connection
    async with anyio.create_task_group() as tg:
        await node.start(tg)
        try:
            yield node, journal
        finally:
            with anyio.CancelScope(shield=True):
                await node.aclose()
            tg.cancel_scope.cancel()


@asynccontextmanager
async def serve(**options: Any) -> AsyncIterator[AsyncBroker]:
    """Run a broker inside the current anyio event loop (asyncio or trio) for the ``async with`` block."""
    opts = Options.from_kwargs(**options)
    async with _run_node(opts) as (node, journal):
        yield AsyncBroker(node, journal)


def start(**options: Any) -> ThreadedBroker:
    """Start a broker on its own event loop thread; returns once every listener accepts connections.

    Use it as a context manager, or call ``.stop()``.
    """
    opts = Options.from_kwargs(**options)
    portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
    portal = portal_cm.__enter__()
    try:
        serve_cm = portal.wrap_async_context_manager(_run_node(opts))
        node, journal = serve_cm.__enter__()
    except BaseException:
        portal_cm.__exit__(*sys.exc_info())
        raise
    return ThreadedBroker(node, journal, portal, portal_cm, serve_cm)
