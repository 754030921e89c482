"""The seam between the broker and its protocols: what a session may use, and what it must provide.

A protocol is one package under ``fakebroker/protocols/`` that exports a :class:`ProtocolSpec` (its listeners,
its settings, the message criteria it adds) and is registered once in :mod:`fakebroker.protocols`.

A session is one client connection's sans-I/O state machine. The runtime feeds it the bytes it reads
(:meth:`Session.receive_data`), writes what :meth:`Session.data_to_send` returns, and closes the socket once
:attr:`Session.state` is no longer ``"open"`` and the output is flushed. Work that starts elsewhere (a message
routed by another client, a timer on the clock) queues output with :meth:`Session.send`, which calls
:attr:`Session.wakeup` so that the runtime flushes it. A session reaches the broker only through its
:class:`SessionHost`; it does no I/O and knows nothing of anyio.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from ..clock import Clock
    from ..config import Options
    from ..model import Broker, LoggedMessage

S = TypeVar("S")

#: ``open``: reading and writing; ``closing``: the session asked to close, its last output is being written;
#: ``closed``: the transport is gone.
SessionState = Literal["open", "closing", "closed"]
Transport = Literal["tcp", "websocket", "http"]


class ProtocolError(Exception):
    """A client broke its protocol. ``reply`` says how the session answers before closing, in the protocol's own
    terms: a CONNACK return code (MQTT), the ERROR frame's headers (STOMP), an HTTP status, an AMQP close code.

    Not a :class:`~fakebroker.errors.BrokerError`: it never reaches a test, only the wire.
    """

    def __init__(self, reason: str, reply: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})  # one empty mapping for every plain TCP connection


@dataclass(slots=True)
class ConnectionInfo:
    """What the runtime knows about the transport; handed to the session when it is created."""

    peer: tuple[str, int]
    local: tuple[str, int]
    transport: Transport = "tcp"
    # Filled for HTTP-upgraded connections: the request's headers, lower-cased names.
    headers: Mapping[str, str] = field(default_factory=lambda: _NO_HEADERS)


class SessionHost(Protocol):
    """Everything a session may use of the broker it runs in."""

    @property
    def model(self) -> Broker: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def options(self) -> Options: ...

    @property
    def stopping(self) -> bool:
        """True while the node goes down (stop, restart): connections drop without their protocol's goodbye
        side effects (no MQTT Last Will), as when RabbitMQ stops its plugins."""
        ...

    def state(self, kind: Callable[[], S]) -> S:
        """The node's one instance of a protocol's shared state (``kind()`` on first use), e.g. MQTT's
        client-id registry. It lives as long as the node, restarts included."""
        ...

    def emit(self, event: str, *args: Any) -> None:
        """Tell observers (``broker.on``, the journal, ``--verbose``) that something happened."""
        ...

    def listening(self) -> dict[str, int]:
        """Listener name -> port, of the listeners accepting connections now."""
        ...

    def operator(self) -> Any:
        """The broker's async handle (:class:`fakebroker.AsyncBroker`) on this loop, for the control plane;
        raises RuntimeError where there is no running node (a session under test)."""
        ...

    def spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work`` as a task on the node's loop (a control-plane request that takes time)."""
        ...


class ProtocolStates:
    """What a host's ``state(kind)`` returns: one instance of each kind, made on first use."""

    def __init__(self) -> None:
        self._states: dict[Callable[[], Any], Any] = {}

    def get(self, kind: Callable[[], S]) -> S:
        found = self._states.get(kind)
        if found is None:
            found = self._states[kind] = kind()
        return found

    def values(self) -> list[Any]:
        return list(self._states.values())


def _no_hook() -> None:
    """A session hook with nothing to call: before the runtime sets it, and after :meth:`Session.unhook`."""


class Session:
    """Base class of protocol sessions. Subclasses implement ``_on_data`` and ``_on_connection_lost``."""

    protocol: str = "?"
    # Slots keep an idle connection small (an instance dictionary and a closure per session were about
    # 0.5 KiB); "__dict__" keeps other attributes possible for subclasses and wrappers.
    __slots__ = ("__dict__", "__weakref__", "_established", "_out", "_state", "abort_transport", "client_id",
                 "close_reason", "info", "output_limit", "user", "wakeup")

    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info
        self._out = bytearray()
        self._state: SessionState = "open"
        self.wakeup: Callable[[], None] = _no_hook
        # Replaced by the runtime: drop this connection without a protocol goodbye (takeover, faults).
        self.abort_transport: Callable[[], None] = self._abort_without_transport
        self.client_id: str | None = None
        self.user: str | None = None
        #: Why the broker ended this connection (keepalive timeout, a protocol error, a takeover), for reports.
        self.close_reason: str | None = None
        self._established = False
        #: Bytes of output past which the client counts as not reading (:attr:`output_full`); set by the
        #: runtime from the broker's ``output_buffer_limit`` option. None: no limit.
        self.output_limit: int | None = None

    def output_backlog(self) -> int:
        """Bytes written by this session and not yet taken by the socket. A wrapping transport (WebSocket)
        replaces it on the instance so that the session inside sees the bytes waiting below it."""
        return len(self._out)

    # -- runtime-facing API ---------------------------------------------------------------------
    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    @property
    def close_requested(self) -> bool:
        """True once the session wants its connection closed (or it is closed already)."""
        return self.state != "open"

    @property
    def established(self) -> bool:
        """True once the client completed its protocol's opening (MQTT: a CONNECT accepted; STOMP: CONNECT
        answered with CONNECTED; HTTP: a request head read; AMQP: the header through Open). A subclass sets
        ``self._established = True`` there. Until then the runtime closes the connection once the broker's
        ``handshake_timeout`` has passed on its clock, so a client that never finishes cannot hold it."""
        return self._established

    @property
    def has_output(self) -> bool:
        """Whether :meth:`data_to_send` has bytes waiting."""
        return bool(self._out)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket. ``b""`` means the peer closed its side."""
        if self.state != "open":
            return
        if not data:
            self.connection_lost()
            return
        self._on_data(data)

    @property
    def output_full(self) -> bool:
        """Whether the client is :attr:`output_limit` bytes or more behind in reading. A session then drops
        what its protocol allows it to drop (MQTT QoS 0 deliveries), counting it, rather than buffer more."""
        limit = self.output_limit
        return limit is not None and self.output_backlog() >= limit

    def output_drained(self) -> None:
        """Called by the runtime when output that had reached :attr:`output_limit` is below it again: a session
        that held deliveries back (``Channel.flow``) resumes them here."""

    def data_to_send(self, max_bytes: int | None = None) -> bytes:
        """The output waiting, or its first ``max_bytes`` (the rest stays for the next call)."""
        out = self._out
        if max_bytes is None or len(out) <= max_bytes:
            data = bytes(out)
            out.clear()
            return data
        data = bytes(out[:max_bytes])
        del out[:max_bytes]  # a bytearray drops its head without moving the rest
        return data

    def connection_lost(self) -> None:
        """The transport is gone (peer closed, reset, dropped by a fault, broker shutdown). Reported once."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._on_connection_lost()
        # Nothing is written after the close. The connection may be kept for reports a while (the journal):
        # what was queued for a client that stopped reading must not be kept with it.
        self._out = bytearray()
        self.unhook()

    def transport_received(self, count: int) -> None:
        """``count`` bytes arrived on the socket for this session inside a wrapper (WebSocket frames, pings):
        traffic for a protocol whose liveness check counts socket bytes (STOMP heart-beats). Nothing by default."""

    def describe(self) -> dict[str, Any]:
        """Protocol-specific fields for ``broker.clients`` (``vhost`` and ``subscriptions`` are read by name)."""
        return {}

    def _abort_without_transport(self) -> None:
        self.connection_lost()

    def unhook(self) -> None:
        """Let go of what its transport or wrapper hooked in (``wakeup``, ``abort_transport``, an
        ``output_backlog`` of its own), as :meth:`connection_lost` does: they point back at the connection,
        cycles that only the cyclic collector would free."""
        self.wakeup = self.abort_transport = _no_hook
        vars(self).pop("output_backlog", None)

    # -- for subclasses --------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self._state == "closed":
            return
        self._out += data
        self.wakeup()

    def request_close(self, reason: str | None = None) -> None:
        """Close the connection after the pending output has been written."""
        if reason is not None and self.close_reason is None:
            self.close_reason = reason
        if self._state == "open":
            self._state = "closing"
        self.wakeup()

    def _on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _on_connection_lost(self) -> None:
        raise NotImplementedError


SessionFactory = Callable[[ConnectionInfo], Session]


@dataclass(frozen=True)
class ListenerSpec:
    """One listener a protocol opens. Its option is ``<name>_port``, its CLI flag ``--<name>-port``."""

    name: str  # "mqtt", "web_mqtt"
    protocol: str  # the protocol its sessions speak: "mqtt"
    session: Callable[[ConnectionInfo, SessionHost], Session]
    default_port: int  # RabbitMQ's port, used by ``fakebroker serve``
    attribute: str  # the handle's attribute for it: an Address ("mqtt") or a URL ("web_mqtt_url")
    description: str  # for the CLI's help and banner
    url: str | None = None  # URL template for ``attribute``, e.g. "ws://{host}:{port}/ws"; None: an Address
    websocket_path: str | None = None
    subprotocols: tuple[str, ...] = ()
    # More handle attributes served by this listener: {"sockjs_url": "http://{host}:{port}/stomp"}.
    more_urls: Mapping[str, str] = field(default_factory=dict)
    # The test operator's listener rather than the clients' (management: the control plane): it stays open, and
    # its connections stay, while the broker refuses connections, restarts or resets.
    operator: bool = False

    @property
    def option(self) -> str:
        return f"{self.name}_port"

    @property
    def cli_flag(self) -> str:
        return f"--{self.name.replace('_', '-')}-port"

    def address_text(self, host: str, port: int) -> str:
        return self.url.format(host=host, port=port) if self.url else f"{host}:{port}"


@dataclass(frozen=True)
class Criterion:
    """A message criterion a protocol adds to ``messages.filter``, the waits and the assertions."""

    doc: str
    match: Callable[[LoggedMessage, Any], bool]
    # What the message has, for near-miss reports.
    actual: Callable[[LoggedMessage], Any]


@dataclass(frozen=True)
class ProtocolSpec:
    """Everything the broker needs to know about one protocol package."""

    name: str
    listeners: tuple[ListenerSpec, ...]
    # A dataclass of the protocol's settings; each field ``f`` is the broker option ``<name>_<f>``.
    settings: type[Any] | None = None
    # Older or RabbitMQ-style option names that mean a namespaced one: {"prefetch": "mqtt_prefetch"}.
    aliases: Mapping[str, str] = field(default_factory=dict)
    criteria: Mapping[str, Criterion] = field(default_factory=dict)
