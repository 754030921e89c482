"""The anyio layer: listeners, one task per connection moving bytes between a socket and a session.

This is the only place with sockets. It also injects faults (drop, stall, refuse) and fires the timers of
a :class:`~fakebroker.clock.WallClock`. Everything runs on one event loop; sessions and the model are
only touched from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import select
import socket
from collections.abc import Callable, Collection
from typing import Any, NamedTuple, cast

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

from ..clock import Clock, TimerHandle, WallClock
from ..protocols.base import ConnectionInfo, Session, SessionFactory
from .sockets import LISTEN_BACKLOG, bind, listen_error

logger = logging.getLogger("fakebroker")

#: The most the writer takes from a session per send.
WRITE_SLICE = 256 * 1024
# While a read is handled, its connection's output is written once it reaches this many bytes (the rest at the end
# of the read): a dozen small messages per system call, and the peer busy sooner (see _ProtocolConnection.wake).
WRITE_EARLY = 1024
# With an output limit, a large read goes to its session in slices of this size (see _ProtocolConnection._feed).
FEED_SLICE = 16384
# A connection's first bytes are read as it is set up (_ProtocolConnection._read_waiting): os.readv() on its
# descriptor, which POSIX systems allow on a socket. Plain TCP only: a TLS transport would have to decrypt them.
_READ_AT_ONCE = os.name == "posix"
#: Back-off between failed accepts (EMFILE, ENFILE, ENOBUFS, ENOMEM): doubles from the first to the second.
ACCEPT_BACKOFF_MIN = 0.01
ACCEPT_BACKOFF_MAX = 0.5
# What _accept_pending() found: connections accepted, or the listener at max_connections.
_ACCEPTED = object()
_FULL = object()
#: accept() errors about the one connection being accepted (it was reset meanwhile), not about the broker.
_TRANSIENT_ACCEPT_ERRORS = frozenset(
    code for code in (getattr(errno, n, None) for n in ("ECONNABORTED", "EPROTO", "ECONNRESET", "EINTR", "EAGAIN"))
    if code is not None
)




class Address(NamedTuple):
    host: str
    port: int


def _noop() -> None:
    pass


class Connection:
    """A live client connection as the runtime tracks it.

    Two kinds move the bytes: :class:`_ProtocolConnection` (an asyncio protocol, no task of its own) on the
    asyncio backend, :class:`_TaskConnection` (a reader task and a writer task on anyio streams) elsewhere.
    """

    __slots__ = ("__weakref__", "_done", "_ended", "_output_was_full", "_runtime", "_slots", "finished",
                 "id", "listener", "opened_at", "peer", "raw", "reads", "session", "stalled", "throttled", "waiting")

    def __init__(self, runtime: Runtime, conn_id: int, listener: str, session: Session, peer: tuple[str, int],
                 opened_at: float, raw: Any, slots: anyio.Semaphore | None) -> None:
        self._runtime = runtime
        self.id = conn_id
        self.listener = listener
        self.session = session
        self.peer = peer
        self.opened_at = opened_at
        self.stalled = False
        # Not read while output_limit bytes or more of what it was sent wait to be written (asyncio and uvloop):
        # a client that sends requests and never reads the answers (PINGREQ after PINGREQ) cannot make the broker
        # buffer them without end. RabbitMQ's reader stops the same way, its socket's port being busy.
        self.throttled = False
        self.raw = raw  # the socket (asyncio hands out a TransportSocket wrapper)
        # For settle(): reads completed, and whether the reader is parked waiting for bytes with none buffered.
        self.reads = 0
        self.waiting = False
        self.finished = False  # the transport is gone or going
        self._ended = False  # everything about the connection is done (on_disconnect called)
        self._done: anyio.Event | None = None  # made only when someone waits for the end
        self._slots = slots  # the listener's max_connections semaphore, released when the connection ends
        self._output_was_full = False  # the session held deliveries back: tell it when the output drains
        session.wakeup = self.wake
        session.abort_transport = self.abort
        session.output_limit = runtime.output_limit

    @property
    def protocol(self) -> str:
        return self.session.protocol

    def _check_handshake(self) -> None:
        """After input: a connection that completed its protocol's opening leaves the handshake sweep."""
        pending = self._runtime._handshakes
        if pending and self.id in pending and self.session.established:
            del pending[self.id]

    @property
    def client_id(self) -> str | None:
        return self.session.client_id

    def __repr__(self) -> str:
        flags = "".join(f" {f}" for f, on in (("stalled", self.stalled), ("finished", self.finished)) if on)
        where = f"{self.peer[0]}:{self.peer[1]}"
        return f"<Connection #{self.id} {self.listener} {where} client_id={self.client_id!r}{flags}>"

    def wake(self) -> None:
        """The session has output (or wants to close): write it."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the socket with no protocol goodbye; the session learns it as a lost connection."""
        raise NotImplementedError

    def stall(self) -> None:
        raise NotImplementedError

    def resume(self) -> None:
        raise NotImplementedError

    async def wait_closed(self) -> None:
        """Return once the connection has ended and ``on_disconnect`` has run."""
        if self._ended:
            return
        if self._done is None:
            self._done = anyio.Event()
        await self._done.wait()


def _lose(conn: Connection) -> None:
    """Tell the session its transport is gone. A bug in its clean-up must cost only this connection: raised
    in the runtime, it would end the node's task group (every connection and listener), or stop drop_all()
    from ever seeing this connection finish."""
    try:
        conn.session.connection_lost()
    except Exception:
        logger.exception("fakebroker: session error on connection %s while closing it", conn.id)


class _ProtocolConnection(Connection, asyncio.BufferedProtocol):
    """A connection driven by asyncio's transport callbacks: reading, writing and closing cost no task, no
    cancel scope and no event. Output produced while handling input is written at the end of that input, and
    whenever WRITE_EARLY bytes are waiting before then; output from elsewhere (a message routed by another
    client, a timer) is written once per loop turn.

    Reads go into one buffer the runtime shares between its connections (a plain protocol makes the loop
    allocate 256 KiB per read)."""

    __slots__ = ("_flush_pending", "_held", "_loop", "_paused", "_receiving", "_transport")

    def __init__(self, runtime: Runtime, conn_id: int, listener: str, session: Session, peer: tuple[str, int],
                 opened_at: float, loop: asyncio.AbstractEventLoop, slots: anyio.Semaphore | None) -> None:
        super().__init__(runtime, conn_id, listener, session, peer, opened_at, None, slots)
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._flush_pending = False
        self._paused = False  # the transport's buffer is full: the session keeps the output until it drains
        self._receiving = False
        self._held: list[bytes] | None = None  # input that arrived while stalled (b"" for the peer's EOF)

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport)
        self._read_waiting()

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        """``connection_made`` without its first read (uvloop's hand-over passes on what it held first)."""
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is one without subclassing it
        self.raw = transport.get_extra_info("socket")
        self.waiting = True  # the event loop reads whenever bytes arrive
        self._runtime._opened(self)

    def _read_waiting(self) -> None:
        """Read what the client sent before its connection was set up, now rather than when the event loop polls
        it next: MQTT, STOMP and AMQP clients speak first (CONNECT, the protocol header) and wait for the answer,
        which so goes out a loop turn sooner (a fifth more connections a second on asyncio's own loop)."""
        if not _READ_AT_ONCE or self.finished or self.stalled or self.raw is None:
            return
        try:
            n = os.readv(self.raw.fileno(), (self._runtime._read_buffer,))
        except OSError:
            return  # nothing yet (EAGAIN), or an error the transport's own read meets as well
        if n:
            self.buffer_updated(n)  # n == 0, the peer's EOF: left to the transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._runtime._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._runtime._read_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        if self.stalled or self._held:
            # Bytes that arrive while stalled are held back, as a frozen peer would not read them (and after
            # what is held already, in order).
            self._hold(data)
            return
        self._feed(data)

    def eof_received(self) -> bool:
        if self.stalled or self._held:
            self._hold(b"")
            return True  # half-open until resume() hands the EOF over
        self._feed(b"")
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._runtime._ended(self)
        # asyncio's selector transport keeps its read callback as a bound method of itself: a cycle that would
        # hold the transport and its socket objects until the cyclic collector runs. Nothing reads it after
        # the connection is lost (the reader is unregistered first); absent elsewhere (uvloop), nothing to do.
        state = getattr(self._transport, "__dict__", None)
        if state is not None:
            state.pop("_read_ready_cb", None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._flush()
        if self.throttled and not self._behind() and not self.finished:
            self.throttled = False
            if not self.stalled:
                assert self._transport is not None
                self._transport.resume_reading()
                self._release_held()

    def _behind(self) -> bool:
        """Whether output_limit bytes or more wait to be written, in the session and in the transport, with the
        transport paused (so that resume_writing() is sure to come and read the connection again)."""
        limit = self._runtime.output_limit
        if limit is None or not self._paused:
            return False
        assert self._transport is not None
        return self.session.output_backlog() + self._transport.get_write_buffer_size() >= limit

    # -- the runtime's side ----------------------------------------------------------------------------
    def wake(self) -> None:
        if self._receiving:
            # The output of a large input goes out as it grows, not only at its end: the peer starts on the first
            # part while the rest is handled. A window of QoS 1 deliveries (acknowledged in one read, refilled
            # in one write) otherwise moves in lock-step, each side waiting for the other.
            if (self.session.output_backlog() >= WRITE_EARLY and not self._paused and not self.stalled
                    and not self.finished):
                assert self._transport is not None
                self._transport.write(self.session.data_to_send(WRITE_SLICE))
            return
        if self._flush_pending or self.finished:
            return  # a flush is scheduled already, or the connection is gone
        self._flush_pending = True
        self._loop.call_soon(self._scheduled_flush)

    def abort(self) -> None:
        if self.finished:
            return
        _lose(self)
        self.finished = True
        if self._transport is not None:
            _shut(self._loop, self._transport)

    def stall(self) -> None:
        self.stalled = True
        if self._transport is not None and not self.finished:
            self._transport.pause_reading()

    def resume(self) -> None:
        self.stalled = False
        if self._transport is not None and not self.finished and not self.throttled:
            self._transport.resume_reading()
        self._release_held()
        if not self.finished:
            self._flush()

    # -- internals -------------------------------------------------------------------------------------
    def _hold(self, data: bytes) -> None:
        if self._held is None:
            self._held = []
        self._held.append(data)

    def _feed(self, data: bytes) -> None:
        session = self.session
        if session.close_requested:
            return  # the reader stops at a close request; what follows is not read
        self._receiving = True
        rest = b""
        try:
            if len(data) <= FEED_SLICE or self._runtime.output_limit is None:
                session.receive_data(data)
            else:
                # In slices, so that what a read asks for (answers, a retained message per SUBSCRIBE) cannot pass
                # the output limit by more than a slice's worth: the rest waits until the client reads.
                for start in range(0, len(data), FEED_SLICE):
                    if self.finished or session.close_requested:
                        break
                    if self._behind():
                        rest = data[start:]
                        break
                    session.receive_data(data[start:start + FEED_SLICE])
        except Exception:
            # A bug in one session must cost only its own connection, never the listener or the broker.
            logger.exception("fakebroker: session error on connection %s; closing it", self.id)
            self._receiving = False
            self.abort()
            return
        self._receiving = False
        self._check_handshake()
        if data:
            self._flush()
            if not self.throttled and not self.finished and self._behind():
                self.throttled = True  # read again once resume_writing() finds the output under the limit
                assert self._transport is not None
                self._transport.pause_reading()
            if rest:
                self._hold(rest)

    def _release_held(self) -> None:
        """Hand over the input held while stalled or throttled, until it is held again."""
        held, self._held = self._held or [], None
        for i, data in enumerate(held):
            if self.finished or self.session.close_requested:
                return
            if self.stalled or self.throttled:
                # What the last feed held again (the rest of its read) came before these.
                self._held = [*(self._held or ()), *held[i:]]
                return
            self._feed(data)
            if not data:
                self._close()
                return

    def _scheduled_flush(self) -> None:
        self._flush_pending = False
        self._flush()

    def _flush(self) -> None:
        if self.stalled or self.finished:
            return
        session, transport = self.session, self._transport
        assert transport is not None
        while not self._paused:
            _check_drained(self)
            if self.finished:
                return  # resuming the held-back output failed and dropped the connection
            # In slices: the transport copies what it cannot send at once.
            data = session.data_to_send(WRITE_SLICE)
            if not data:
                break
            transport.write(data)
        if session.close_requested and not self._paused:
            self._close()

    def _close(self) -> None:
        """Close after the session's last words, as its protocol asked."""
        if self.finished:
            return
        self.finished = True
        assert self._transport is not None
        _shut(self._loop, self._transport, eof=False)


def _shut(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, eof: bool = True) -> None:
    """Close (after an EOF with ``eof``); what the peer has not taken by the next loop turn is dropped, as
    anyio's ``aclose()`` does. A close after the session's last words needs no separate EOF: with nothing left
    unread the socket's close sends it (one system call less per connection)."""
    if eof:
        with contextlib.suppress(OSError, RuntimeError):
            if transport.can_write_eof():
                transport.write_eof()
    transport.close()
    if transport.get_write_buffer_size():
        loop.call_soon(transport.abort)


class _Handoff(asyncio.Protocol):
    """What uvloop's server gets for each connection it accepts: the transport goes to a connection of the
    runtime, made once the peer's address is known, or waits at max_connections. uvloop starts reading when
    ``connection_made`` returns, so a waiting one may get bytes (or the EOF) before its pause takes effect:
    they are kept for the connection."""

    __slots__ = ("_accept", "held", "transport")

    def __init__(self, accept: _ServedAccept) -> None:
        self._accept = accept
        self.held: list[bytes] = []  # b"": the peer's EOF
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._accept.accepted(self)

    def data_received(self, data: bytes) -> None:
        self.held.append(data)

    def eof_received(self) -> bool:
        self.held.append(b"")
        return True  # half-open: the connection it is handed to decides


class _ServedAccept:
    """Accepting on uvloop: its own server accepts and makes each transport, with no Python socket object,
    future or coroutine per connection (a fifth to a quarter less CPU per connection than ``sock_accept`` and
    ``connect_accepted_socket``). The server serves a duplicate of the listening socket: closing it stops the
    accepting while the socket still listens, so that at max_connections new clients wait in the TCP backlog,
    as on the other paths. Near the descriptor limit, or after uvloop's accept failed, the listener goes on with
    ``sock_accept``, which backs off when out of descriptors and leaves new clients in the backlog meanwhile."""

    def __init__(self, runtime: Runtime, loop: asyncio.AbstractEventLoop, name: str, raw: socket.socket,
                 slots: anyio.Semaphore | None) -> None:
        self.runtime, self.loop, self.name, self.raw, self.slots = runtime, loop, name, raw, slots
        # Accepted in the same batch as the last connection max_connections allows: not read until a slot frees.
        self.parked: list[_Handoff] = []
        self.full: asyncio.Future[None] | None = None
        # Descriptors are handed out lowest first: once an accepted one is within an eighth of the limit (at most
        # 256) of it, the listener leaves uvloop's server for the careful way. Out of descriptors, libuv closes the
        # connections waiting in the backlog (when it has a spare descriptor to accept them with) or retries
        # accept() on every loop turn.
        limit = _descriptor_limit()
        self.last_fd = None if limit is None else limit - max(1, min(256, limit // 8))
        self.careful = False

    def __call__(self) -> _Handoff:  # the server's protocol factory
        return _Handoff(self)

    async def run(self) -> None:
        """Accept until cancelled; return when the listener should go on the careful way: uvloop's accept
        failed, or the process came near its descriptor limit."""
        try:
            while True:
                try:
                    served = self.raw.dup()
                except OSError:
                    return  # out of descriptors already
                full = self.full = self.loop.create_future()
                try:
                    server = await self.loop.create_server(self, sock=served, backlog=LISTEN_BACKLOG)
                except OSError:
                    served.close()
                    return
                try:
                    # Some uvloop versions close their server when an accept fails, which detaches the
                    # duplicate socket.
                    while not full.done() and served.fileno() != -1:
                        await asyncio.wait((full,), timeout=ACCEPT_BACKOFF_MAX)
                finally:
                    server.close()
                if full.done():
                    await self._until_free()
                if self.careful or not full.done():
                    return
        finally:
            for handoff in self.parked:
                assert handoff.transport is not None
                handoff.transport.abort()
            self.parked.clear()

    def accepted(self, handoff: _Handoff) -> None:
        slots = self.slots
        if slots is not None:
            try:
                slots.acquire_nowait()
            except anyio.WouldBlock:
                self.parked.append(handoff)
                assert handoff.transport is not None
                self.loop.call_soon(handoff.transport.pause_reading)  # uvloop reads once connection_made returns
                self._stop()
                return
            if not slots.value:
                self._stop()  # at max_connections the listener stops accepting; new clients wait in the backlog
        self._hand_over(handoff)

    def _stop(self) -> None:
        if self.full is not None and not self.full.done():
            self.full.set_result(None)

    def _hand_over(self, handoff: _Handoff) -> None:
        runtime, transport = self.runtime, handoff.transport
        assert transport is not None
        try:
            peer = transport.get_extra_info("peername")
            if peer is None:
                raise ConnectionResetError("gone before it was handed over")
            conn = runtime._new_connection(self.loop, self.name, peer, transport.get_extra_info("sockname"),
                                           self.slots)
        except Exception as exc:
            runtime._drop_accepted(self.name, transport, self.slots, exc)
            return
        transport.set_protocol(conn)
        conn._attach(transport)
        if self.last_fd is not None and conn.raw is not None and conn.raw.fileno() >= self.last_fd:
            self.careful = True
            self._stop()
        held, handoff.held = handoff.held, []
        for data in held:
            if conn.finished:
                break
            if data:
                conn.data_received(data)
            elif not conn.eof_received():
                transport.close()
        if not held or held[-1]:
            conn._read_waiting()

    async def _until_free(self) -> None:
        """At max_connections: as slots free, the parked connections first, then accepting again."""
        slots = self.slots
        if slots is None:
            return
        while self.parked:
            await slots.acquire()
            handoff = self.parked.pop(0)
            self._hand_over(handoff)  # releases the slot if the peer is gone meanwhile
            assert handoff.transport is not None
            if not handoff.transport.is_closing():
                handoff.transport.resume_reading()
        await slots.acquire()
        slots.release()


class _TaskConnection(Connection):
    """A connection on an anyio stream (trio, or asyncio without the protocol path): a reader task and a
    writer task under one cancel scope."""

    __slots__ = ("_idle", "_pending", "_resumed", "_scope", "stream")

    def __init__(self, runtime: Runtime, conn_id: int, listener: str, session: Session, peer: tuple[str, int],
                 opened_at: float, stream: anyio.abc.SocketStream, raw: Any, slots: anyio.Semaphore | None) -> None:
        super().__init__(runtime, conn_id, listener, session, peer, opened_at, raw, slots)
        self.stream = stream
        self._pending = False  # output (or a close) to handle
        self._idle: anyio.Event | None = None  # set by wake() while the writer waits; made only to wait
        self._resumed: anyio.Event | None = None  # while stalled
        self._scope: anyio.CancelScope | None = None

    def wake(self) -> None:
        self._pending = True
        if self._idle is not None:
            self._idle.set()

    def abort(self) -> None:
        _lose(self)
        if self._scope is not None:
            self._scope.cancel()

    def stall(self) -> None:
        if self.stalled:
            return  # a new event now would leave the reader and writer waiting on one resume() never sets
        self.stalled = True
        self._resumed = anyio.Event()

    def resume(self) -> None:
        self.stalled = False
        if self._resumed is not None:
            self._resumed.set()
            self._resumed = None
        self.wake()

    async def _until_resumed(self) -> None:
        while self.stalled and self._resumed is not None:
            await self._resumed.wait()


class Runtime:
    """Owns the listeners and connections of one broker."""

    #: Drive connections with asyncio protocols when the loop is asyncio's (or uvloop); False: anyio streams and
    #: tasks everywhere (the path trio takes), e.g. to compare the two.
    asyncio_protocols = True

    def __init__(self, clock: Clock, host: str = "127.0.0.1", *, handshake_timeout: float | None = None,
                 max_connections: int | None = None, output_limit: int | None = None) -> None:
        self.clock = clock
        self.host = host
        self.output_limit = output_limit
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self._slots: dict[str, anyio.Semaphore] = {}  # per listener, when max_connections is set
        self.connections: dict[int, Connection] = {}
        self.addresses: dict[str, Address] = {}
        self._factories: dict[str, SessionFactory] = {}
        self._ids = itertools.count(1)
        self._tg: anyio.abc.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set when connections use the protocol path
        self._listener_scopes: dict[str, anyio.CancelScope] = {}
        self._listener_closed: dict[str, anyio.Event] = {}
        self._timer_wake = anyio.Event()
        self._timer_deadline: float | None = None  # what the timer task sleeps until (None: no timer)
        # Connections still in their protocol's opening, oldest first (their deadlines come in the same order);
        # one clock timer sweeps them, rather than one timer per connection to schedule and cancel. Each leaves
        # as soon as it is established or gone: an entry kept until its deadline held memory of a connection
        # long closed.
        self._handshakes: dict[int, Connection] = {}
        self._handshake_timer: TimerHandle | None = None
        self._read_buffer = memoryview(bytearray(65536))  # the protocol path's reads, one at a time
        self.on_connect: Callable[[Connection], None] = lambda c: None
        self._local_addresses: dict[str, tuple[str, int]] = {}
        self.accept_failures = 0  # failed accept() calls (e.g. out of file descriptors) since the start
        self.on_disconnect: Callable[[Connection], None] = lambda c: None

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self, tg: anyio.abc.TaskGroup, listeners: dict[str, tuple[int, SessionFactory]],
                    sockets: dict[str, socket.socket] | None = None) -> None:
        """Open the listeners. ``sockets``: listening sockets already bound (by ``fakebroker serve``, so that
        its ports accept connections before the event loop runs), by listener name; the rest are bound here."""
        self._tg = tg
        self._loop = _running_asyncio_loop() if self.asyncio_protocols else None
        sockets = sockets or {}
        for name, (port, factory) in listeners.items():
            self._factories[name] = factory
            if self.max_connections is not None:
                self._slots[name] = anyio.Semaphore(self.max_connections)
            await self._open_listener(name, port, sockets.get(name))
        if isinstance(self.clock, WallClock):
            self.clock.on_schedule = self._timer_scheduled
            tg.start_soon(self._wall_timers)

    async def _open_listener(self, name: str, port: int, bound: socket.socket | None = None) -> None:
        assert self._tg is not None
        listener: anyio.abc.Listener[Any]
        if bound is None:
            bound = bind(name, self.host, port)  # an IP address: bound here, with no thread to resolve it
        if bound is not None:
            listener = await anyio.abc.SocketListener.from_socket(bound)
        else:
            try:
                listener = await anyio.create_tcp_listener(local_host=self.host, local_port=port, reuse_port=False,
                                                           backlog=LISTEN_BACKLOG)
            except OSError as exc:
                raise OSError(exc.errno, listen_error(name, self.host, port, exc)) from exc
        sock = listener.extra(anyio.abc.SocketAttribute.raw_socket)
        host, bound_port = sock.getsockname()[:2]
        self.addresses[name] = Address(host, bound_port)
        scope = anyio.CancelScope()
        self._listener_scopes[name] = scope
        self._listener_closed[name] = closed = anyio.Event()
        self._tg.start_soon(self._serve, name, listener, scope, closed)

    async def _serve(self, name: str, listener: anyio.abc.Listener[Any], scope: anyio.CancelScope,
                     closed: anyio.Event) -> None:
        # Connections run in the node's task group, not the listener's: closing a listener (refused
        # connections, restart) must not cancel the connections it accepted.
        try:
            with scope:
                async with listener, anyio.create_task_group() as tg:
                    subs = listener.listeners if isinstance(listener, MultiListener) else [listener]
                    for sub in subs:
                        tg.start_soon(self._accept_loop, name, sub)
        finally:
            closed.set()

    async def _accept_loop(self, name: str, listener: Any) -> None:
        """Accept connections until cancelled. anyio's ``serve()`` ends (and takes the node's task group with
        it) on the first failed accept; here a failure such as running out of file descriptors (EMFILE) is
        logged once, retried after a back-off that grows to :data:`ACCEPT_BACKOFF_MAX`, and every existing
        connection keeps working meanwhile."""
        assert self._tg is not None
        slots = self._slots.get(name)
        loop = self._loop
        raw: socket.socket = listener.extra(anyio.abc.SocketAttribute.raw_socket)
        if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
            await self._accept_when_ready(loop, name, raw, slots)
            return
        if loop is not None and type(loop).__module__.startswith("uvloop"):
            await _ServedAccept(self, loop, name, raw, slots).run()  # returns once uvloop failed an accept
        failures = 0
        while True:
            if slots is not None:
                try:
                    slots.acquire_nowait()  # no checkpoint (two loop turns) per connection below the cap
                except anyio.WouldBlock:
                    # At max_connections the listener stops accepting; new clients wait in the TCP backlog.
                    await slots.acquire()
            try:
                if loop is not None:
                    sock, peer = await loop.sock_accept(raw)
                else:
                    stream = await listener.accept()
            except BaseException as exc:
                if slots is not None:
                    slots.release()
                if not isinstance(exc, OSError):
                    raise
                if exc.errno in _TRANSIENT_ACCEPT_ERRORS:
                    continue  # that one connection is gone already; nothing is short
                failures += 1
                await anyio.sleep(self._accept_failed(name, exc, failures))
                continue
            if failures:
                self._accept_recovered(name, failures)
                failures = 0
            if loop is not None:
                await self._accept_protocol(loop, name, sock, peer, slots)
            else:
                self._tg.start_soon(self._run_task_connection, name, stream, slots)

    def _accept_failed(self, name: str, exc: OSError, failures: int) -> float:
        """Count and (the first time) log a failed accept; the back-off before the next attempt."""
        if failures == 1:
            logger.warning("fakebroker: %s listener cannot accept a connection (%s); retrying every "
                           "%.2g s or less until it can; existing connections are not affected",
                           name, exc, ACCEPT_BACKOFF_MAX)
        self.accept_failures += 1
        return float(min(ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN * 2 ** min(failures - 1, 16)))

    def _accept_recovered(self, name: str, failures: int) -> None:
        logger.warning("fakebroker: %s listener accepts connections again after %d failed attempts", name, failures)

    async def _accept_when_ready(self, loop: asyncio.selector_events.BaseSelectorEventLoop, name: str,
                                 raw: socket.socket, slots: anyio.Semaphore | None) -> None:
        """Accepting on asyncio's selector loops: the listening socket stays registered with the selector, and
        each time it is readable the pending connections are accepted and their transports made right there, as
        asyncio's own server does, without its task per connection. ``loop.sock_accept`` cost a future and
        two selector changes per connection, ``connect_accepted_socket`` a coroutine and a loop turn."""
        fd = raw.fileno()
        failures = 0
        while True:
            wake: asyncio.Future[OSError | None] = loop.create_future()

            def readable(wake: asyncio.Future[OSError | None] = wake) -> None:
                nonlocal failures
                outcome = self._accept_pending(loop, name, raw, slots)
                if outcome is _ACCEPTED:
                    if failures:
                        self._accept_recovered(name, failures)
                        failures = 0
                elif outcome is not None and not wake.done():
                    loop.remove_reader(fd)  # full or failing: nothing more until the wait below is over
                    wake.set_result(outcome if isinstance(outcome, OSError) else None)

            loop.add_reader(fd, readable)
            try:
                error = await wake
            finally:
                loop.remove_reader(fd)
            if error is None:
                # At max_connections the listener stops accepting; new clients wait in the TCP backlog.
                assert slots is not None
                await slots.acquire()
                slots.release()
            else:
                failures += 1
                await anyio.sleep(self._accept_failed(name, error, failures))

    def _accept_pending(self, loop: asyncio.selector_events.BaseSelectorEventLoop, name: str, raw: socket.socket,
                        slots: anyio.Semaphore | None) -> object:
        """Accept and set up the connections waiting on ``raw`` (at most 64, then other work gets a turn).
        Returns None when none is left, :data:`_ACCEPTED` after at least one, :data:`_FULL` at
        ``max_connections``, or the error of a failed accept()."""
        outcome: object = None
        for _ in range(64):
            if slots is not None:
                try:
                    slots.acquire_nowait()
                except anyio.WouldBlock:
                    return _FULL
            try:
                sock, peer = raw.accept()
            except (BlockingIOError, InterruptedError):
                if slots is not None:
                    slots.release()
                return outcome
            except OSError as exc:
                if slots is not None:
                    slots.release()
                if exc.errno in _TRANSIENT_ACCEPT_ERRORS:
                    continue  # that one connection is gone already; nothing is short
                return exc
            outcome = _ACCEPTED
            try:
                sock.setblocking(False)
                conn = self._protocol_connection(loop, name, sock, peer, slots)
                # What asyncio's server does for each connection it accepts (BaseSelectorEventLoop's
                # _accept_connection2); the transport calls connection_made on the next loop turn.
                cast(Any, loop)._make_socket_transport(sock, conn, extra={"peername": peer})
            except Exception as exc:
                self._drop_accepted(name, sock, slots, exc)
        return outcome

    def _drop_accepted(self, listener: str, sock: socket.socket | asyncio.Transport, slots: anyio.Semaphore | None,
                       exc: Exception) -> None:
        """An accepted connection that could not be set up. Typically the peer reset it before it was handed
        over; raising would end the listener's task group, and a session factory's bug must cost only this
        connection. Called in the ``except`` block (the traceback is logged)."""
        if not isinstance(exc, OSError):
            logger.exception("fakebroker: cannot start a session on the %s listener", listener)
        if isinstance(sock, socket.socket):
            sock.close()
        else:
            sock.abort()
        if slots is not None:
            slots.release()

    def listening(self) -> dict[str, int]:
        """Listener name -> port of the listeners open now (not those a refusal or a restart closed)."""
        return {name: a.port for name, a in self.addresses.items() if name in self._listener_scopes}

    async def close_listeners(self, keep: Collection[str] = ()) -> None:
        """Close every listening socket but those named in ``keep``; returns once they are closed (a connect()
        is then refused)."""
        names = [name for name in self._listener_scopes if name not in keep]
        for name in names:
            self._listener_scopes[name].cancel()
        for name in names:
            await self._listener_closed[name].wait()
        for name in names:
            del self._listener_scopes[name], self._listener_closed[name]

    async def reopen_listeners(self) -> None:
        """Listen again, on the same ports, wherever :meth:`close_listeners` stopped listening."""
        for name, address in self.addresses.items():
            if name in self._listener_scopes:
                continue
            # A client's ephemeral port can briefly hold our port while it was free; try for a moment.
            for attempt in range(200):
                try:
                    await self._open_listener(name, address.port)
                    break
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE or attempt == 199:
                        raise
                    await anyio.sleep(0.01)

    async def aclose(self) -> None:
        await self.close_listeners()
        await self.drop_all()

    async def drop_all(self, keep: Collection[str] = ()) -> None:
        """Drop every connection but those accepted by the listeners named in ``keep``."""
        doomed = [conn for conn in self.connections.values() if conn.listener not in keep]
        for conn in doomed:
            conn.abort()
        for conn in doomed:
            await conn.wait_closed()

    # -- one connection: what both kinds share ----------------------------------------------------------
    def _opened(self, conn: Connection) -> None:
        self.connections[conn.id] = conn
        self.on_connect(conn)
        if self.handshake_timeout is not None and not conn.finished and not conn.session.established:
            self._handshakes[conn.id] = conn
            if self._handshake_timer is None:
                self._handshake_timer = self.clock.call_at(conn.opened_at + self.handshake_timeout +
                                                           self._sweep_slack(), self._sweep_handshakes)

    def _sweep_slack(self) -> float:
        # On the wall clock one sweep takes every connection due within 50 ms, instead of a wake-up for each of
        # a stream of connections; a test's virtual clock is exact.
        return 0.05 if isinstance(self.clock, WallClock) else 0.0

    def _sweep_handshakes(self) -> None:
        self._handshake_timer = None
        timeout = self.handshake_timeout
        assert timeout is not None
        now, pending = self.clock.now(), self._handshakes
        due = []
        for conn in pending.values():
            if conn.opened_at + timeout > now:
                break
            due.append(conn)
        for conn in due:
            del pending[conn.id]
            self._handshake_expired(conn)
        if pending:
            first = next(iter(pending.values()))
            self._handshake_timer = self.clock.call_at(first.opened_at + timeout + self._sweep_slack(),
                                                       self._sweep_handshakes)

    def _ended(self, conn: Connection) -> None:
        """The transport is closed: settle the session, forget the connection, tell the observers."""
        if conn._ended:
            return
        conn.finished = True
        _lose(conn)
        self.connections.pop(conn.id, None)
        self._handshakes.pop(conn.id, None)
        conn._ended = True
        if conn._done is not None:
            conn._done.set()
        if conn._slots is not None:
            conn._slots.release()
            conn._slots = None
        self.on_disconnect(conn)

    def _session(self, listener: str, peer: tuple[str, int], local: tuple[str, int]) -> Session:
        # An IPv6 address comes with flow info and scope id: keep (host, port). The local address is the same
        # for most connections of a listener: one tuple for all of them.
        if len(peer) != 2:
            peer = (peer[0], peer[1])
        known = self._local_addresses.get(listener)
        if known == local:
            local = known
        else:
            local = self._local_addresses[listener] = (local[0], local[1])
        return self._factories[listener](ConnectionInfo(peer, local))

    # -- the protocol path (asyncio) --------------------------------------------------------------------
    def _protocol_connection(self, loop: asyncio.AbstractEventLoop, listener: str, sock: socket.socket,
                             peer: tuple[str, int], slots: anyio.Semaphore | None) -> _ProtocolConnection:
        """The connection object and its session for an accepted socket (the peer's address came with it)."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._new_connection(loop, listener, peer, sock.getsockname(), slots)

    def _new_connection(self, loop: asyncio.AbstractEventLoop, listener: str, peer: tuple[str, int],
                        local: tuple[str, int], slots: anyio.Semaphore | None) -> _ProtocolConnection:
        """The connection object and its session, for a connection from ``peer`` to ``local``."""
        session = self._session(listener, peer, local)
        return _ProtocolConnection(self, next(self._ids), listener, session, session.info.peer, self.clock.now(),
                                   loop, slots)

    async def _accept_protocol(self, loop: asyncio.AbstractEventLoop, listener: str, sock: socket.socket,
                               peer: tuple[str, int], slots: anyio.Semaphore | None) -> None:
        try:
            conn = self._protocol_connection(loop, listener, sock, peer, slots)
        except Exception as exc:
            self._drop_accepted(listener, sock, slots, exc)
            return
        try:
            await loop.connect_accepted_socket(lambda: conn, sock)
        except BaseException as exc:
            if conn._transport is None:  # never made: nothing else releases its slot or closes the socket
                sock.close()
                if slots is not None:
                    slots.release()
                    conn._slots = None
            if not isinstance(exc, Exception):
                raise  # cancelled: the listener is closing
            if not isinstance(exc, OSError):
                logger.exception("fakebroker: cannot set up a connection on the %s listener", listener)

    # -- the task path (anyio streams: trio) ------------------------------------------------------------
    async def _run_task_connection(self, listener: str, stream: anyio.abc.SocketStream,
                                   slots: anyio.Semaphore | None) -> None:
        try:
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = stream.extra(anyio.abc.SocketAttribute.remote_address)
            local = stream.extra(anyio.abc.SocketAttribute.local_address)
        except (OSError, anyio.TypedAttributeLookupError):
            # The peer reset the connection before it was handed over (no peer address any more). Raising here
            # would end the node's task group, i.e. the whole broker.
            await _close_quietly(stream)
            if slots is not None:
                slots.release()
            return
        peer, local = (peer[0], int(peer[1])), (local[0], int(local[1]))
        session = self._session(listener, peer, local)
        conn = _TaskConnection(self, next(self._ids), listener, session, session.info.peer, self.clock.now(),
                               stream, raw, slots)
        self._opened(conn)
        try:
            with anyio.CancelScope() as scope:
                conn._scope = scope
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._writer, conn, scope)
                    await self._reader(conn)
                    # Read no more: the writer flushes the session's last words and ends the connection.
                    conn.wake()
        finally:
            conn.finished = True
            with anyio.CancelScope(shield=True):
                await _close_quietly(stream)
            self._ended(conn)

    async def _reader(self, conn: _TaskConnection) -> None:
        session = conn.session
        while not (session.closed or session.close_requested):
            if conn.stalled:
                await conn._until_resumed()
                continue
            try:
                conn.waiting = True
                try:
                    data = await conn.stream.receive(65536)
                finally:
                    conn.waiting = False
                conn.reads += 1
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                data = b""
            if conn.stalled:
                # Bytes that arrive while stalled are held back, as a frozen peer would not read them.
                await conn._until_resumed()
            try:
                session.receive_data(data)
            except Exception:
                # A bug in one session must cost only its own connection, never the listener or the broker.
                logger.exception("fakebroker: session error on connection %s; closing it", conn.id)
                conn.abort()
                return
            conn._check_handshake()
            conn.wake()
            if not data:
                return

    async def _writer(self, conn: _TaskConnection, scope: anyio.CancelScope) -> None:
        """Write what the session produces; once it wants to close (or is closed), end the connection."""
        session = conn.session
        while True:
            if not conn._pending:
                conn._idle = anyio.Event()  # one per wait, not per write: output that keeps coming never waits
                await conn._idle.wait()
                conn._idle = None
            conn._pending = False
            # In slices: a client that reads slowly must not make each send copy everything queued for it.
            while True:
                if conn.stalled:
                    await conn._until_resumed()
                _check_drained(conn)
                data = session.data_to_send(WRITE_SLICE)
                if not data:
                    break
                try:
                    await conn.stream.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    _lose(conn)
                    scope.cancel()
                    return
            if session.close_requested or session.closed:
                scope.cancel()
                return

    async def settle(self, timeout: float = 0.5) -> None:
        """Return once every byte that has already reached the broker's sockets has been read and handed to its
        session, so that what a client sent before the test moved time is applied first.

        A connection is settled when its reader is parked waiting for bytes, its socket holds nothing (no data,
        no pending EOF), and that held for several loop turns in a row: a read completed by the event loop
        reaches the reader task only a turn or two later. Stalled connections are skipped (their bytes are held
        on purpose); bytes a client has not written yet cannot be seen.
        """
        quiet, last = 0, None
        with anyio.move_on_after(timeout):  # a peer that streams without pause must not hang the caller
            while quiet < 4:
                state = []
                busy = False
                for conn in list(self.connections.values()):
                    if conn.stalled or conn.throttled or conn.finished or conn.session.close_requested:
                        continue  # their bytes wait in the socket on purpose
                    if not conn.waiting or _readable(conn.raw):
                        busy = True
                        break
                    state.append((conn.id, conn.reads))
                quiet = 0 if busy or state != last else quiet + 1
                last = state
                await anyio.sleep(0)

    def _handshake_expired(self, conn: Connection) -> None:
        if conn.finished or conn.session.established:
            return
        if conn.session.close_reason is None:
            conn.session.close_reason = f"handshake not completed within {self.handshake_timeout:g} s"
        logger.info("fakebroker: closing connection %s from %s:%s: %s", conn.id, *conn.peer[:2],
                    conn.session.close_reason)
        conn.abort()

    async def flush(self) -> None:
        """Wait until every connection has written what its session produced so far."""
        with anyio.move_on_after(5):  # a peer that stopped reading must not hang the caller
            for conn in list(self.connections.values()):
                if conn.stalled:
                    continue
                if conn.session.close_requested or conn.session.closed:
                    await conn.wait_closed()
                    continue
                spins = 0
                while conn.session.has_output and not conn.finished:
                    spins += 1
                    await anyio.sleep(0 if spins < 50 else 0.001)
                # One more turn so the writer task's send has reached the kernel.
                await anyio.sleep(0)

    # -- faults -------------------------------------------------------------------------------------
    def find(self, client_id: str) -> list[Connection]:
        return [c for c in self.connections.values() if c.client_id == client_id]

    async def disconnect(self, conn: Connection) -> None:
        conn.abort()
        await conn.wait_closed()

    def stall(self, conn: Connection) -> None:
        conn.stall()

    def resume(self, conn: Connection) -> None:
        conn.resume()

    # -- wall-clock timers --------------------------------------------------------------------------
    def _timer_scheduled(self) -> None:
        # Wake the timer task only for a timer earlier than the one it sleeps until: a handshake or keepalive
        # timer per connection must not cost a wake-up (and an event and a cancel scope) each.
        deadline, earliest = self._timer_deadline, self.clock.next_deadline()
        if deadline is None or earliest is None or earliest < deadline:
            self._timer_wake.set()

    async def _wall_timers(self) -> None:
        while True:
            try:
                self.clock.run_due()
            except Exception:
                # The failing timer is already off the heap; the others still run on the next turn. Raised
                # here, it would end the node's task group, i.e. the whole broker.
                logger.exception("fakebroker: timer callback failed")
            deadline = self.clock.next_deadline()
            self._timer_wake = anyio.Event()
            self._timer_deadline = deadline
            delay = None if deadline is None else max(0.0, deadline - self.clock.now())
            with anyio.move_on_after(delay if delay is not None else float("inf")):
                await self._timer_wake.wait()


def _descriptor_limit() -> int | None:
    """The process's soft limit on open file descriptors, or None (no limit, or not POSIX)."""
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop (uvloop included), or None on another backend (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _readable(sock: Any) -> bool:
    """Whether the kernel holds bytes or an EOF for ``sock`` that the event loop has not read yet."""
    if sock is None:
        return False
    try:
        fd = sock.fileno()
        if fd < 0:
            return False
        if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return False  # closed meanwhile: the reader learns it from its own receive()


def _check_drained(conn: Connection) -> None:
    """Tell the session once its output, after being at its limit, is under it again: the deliveries it held
    back resume (and may fill it again at once, hence the new reading)."""
    session = conn.session
    if session.output_full:
        conn._output_was_full = True
    elif conn._output_was_full:
        _drained(conn)
        conn._output_was_full = session.output_full


def _drained(conn: Connection) -> None:
    # Resuming deliveries runs model code; a bug there must cost only this connection (see _lose).
    try:
        conn.session.output_drained()
    except Exception:
        logger.exception("fakebroker: session error on connection %s while resuming its output", conn.id)
        conn.abort()


async def _close_quietly(stream: anyio.abc.SocketStream) -> None:
    # The peer may already be gone; there is nothing to report then.
    with contextlib.suppress(Exception):
        await stream.aclose()


__all__ = ["Address", "Connection", "Runtime"]
