"""The anyio layer: listeners, one task per connection moving bytes between a socket and a session.

This is the only place with sockets. It also injects faults (drop, stall, refuse) and fires the timers of
a :class:`~fakebroker.clock.WallClock`. Everything runs on one event loop; sessions and the model are
only touched from it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import select
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

from ..clock import Clock, TimerHandle, WallClock
from ..protocols.base import ConnectionInfo, Session, SessionFactory

logger = logging.getLogger("fakebroker")

#: Back-off between failed accepts (EMFILE, ENFILE, ENOBUFS, ENOMEM): doubles from the first to the second.
ACCEPT_BACKOFF_MIN = 0.01
ACCEPT_BACKOFF_MAX = 0.5
#: accept() errors about the one connection being accepted (it was reset meanwhile), not about the broker.
_TRANSIENT_ACCEPT_ERRORS = frozenset(
    code for code in (getattr(errno, n, None) for n in ("ECONNABORTED", "EPROTO", "ECONNRESET", "EINTR", "EAGAIN"))
    if code is not None
)




class Address(NamedTuple):
    host: str
    port: int


@dataclass(eq=False)
class Connection:
    """A live client connection as the runtime tracks it."""

    id: int
    listener: str
    session: Session
    stream: anyio.abc.SocketStream
    peer: tuple[str, int]
    opened_at: float
    stalled: bool = False
    raw: Any = None  # the socket (asyncio hands out a TransportSocket wrapper)
    # For settle(): reads completed, and whether the reader is parked in receive() with nothing buffered.
    reads: int = 0
    waiting: bool = False
    finished: bool = False
    _wake: anyio.Event = field(default_factory=anyio.Event)
    _resumed: anyio.Event = field(default_factory=anyio.Event)
    _done: anyio.Event = field(default_factory=anyio.Event)
    _scope: anyio.CancelScope | None = None
    _handshake: TimerHandle | None = None

    @property
    def protocol(self) -> str:
        return self.session.protocol

    @property
    def client_id(self) -> str | None:
        return self.session.client_id

    def wake(self) -> None:
        self._wake.set()

    def abort(self) -> None:
        """Drop the socket with no protocol goodbye; the session learns it as a lost connection."""
        _lose(self)
        if self._scope is not None:
            self._scope.cancel()


def _lose(conn: Connection) -> None:
    """Tell the session its transport is gone. A bug in its clean-up must cost only this connection: raised
    in the runtime, it would end the node's task group (every connection and listener), or stop drop_all()
    from ever seeing this connection finish."""
    try:
        conn.session.connection_lost()
    except Exception:
        logger.exception("fakebroker: session error on connection %s while closing it", conn.id)


class Runtime:
    """Owns the listeners and connections of one broker."""

    def __init__(self, clock: Clock, host: str = "127.0.0.1", *, handshake_timeout: float | None = None,
                 max_connections: int | None = None) -> None:
        self.clock = clock
        self.host = host
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self._slots: dict[str, anyio.Semaphore] = {}  # per listener, when max_connections is set
        self.connections: dict[int, Connection] = {}
        self.addresses: dict[str, Address] = {}
        self._factories: dict[str, SessionFactory] = {}
        self._ids = itertools.count(1)
        self._tg: anyio.abc.TaskGroup | None = None
        self._listener_scopes: dict[str, anyio.CancelScope] = {}
        self._listener_closed: dict[str, anyio.Event] = {}
        self._timer_wake = anyio.Event()
        self.on_connect: Callable[[Connection], None] = lambda c: None
        self.accept_failures = 0  # failed accept() calls (e.g. out of file descriptors) since the start
        self.on_disconnect: Callable[[Connection], None] = lambda c: None

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self, tg: anyio.abc.TaskGroup, listeners: dict[str, tuple[int, SessionFactory]]) -> None:
        self._tg = tg
        for name, (port, factory) in listeners.items():
            self._factories[name] = factory
            if self.max_connections is not None:
                self._slots[name] = anyio.Semaphore(self.max_connections)
            await self._open_listener(name, port)
        if isinstance(self.clock, WallClock):
            self.clock.on_schedule = self._timer_wake.set
            tg.start_soon(self._wall_timers)

    async def _open_listener(self, name: str, port: int) -> None:
        assert self._tg is not None
        try:
            listener = await anyio.create_tcp_listener(local_host=self.host, local_port=port, reuse_port=False)
        except OSError as exc:
            raise OSError(exc.errno, f"{name} listener on {self.host}:{port}: {exc.strerror}") from exc
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
        failures = 0
        slots = self._slots.get(name)
        while True:
            if slots is not None:
                # At max_connections the listener stops accepting; new clients wait in the TCP backlog.
                await slots.acquire()
            try:
                stream = await listener.accept()
            except BaseException as exc:
                if slots is not None:
                    slots.release()
                if not isinstance(exc, OSError):
                    raise
                if exc.errno in _TRANSIENT_ACCEPT_ERRORS:
                    continue  # that one connection is gone already; nothing is short
                failures += 1
                delay = min(ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN * 2 ** min(failures - 1, 16))
                if failures == 1:
                    logger.warning("fakebroker: %s listener cannot accept a connection (%s); retrying every "
                                   "%.2g s or less until it can; existing connections are not affected",
                                   name, exc, ACCEPT_BACKOFF_MAX)
                self.accept_failures += 1
                await anyio.sleep(delay)
                continue
            if failures:
                logger.warning("fakebroker: %s listener accepts connections again after %d failed attempts",
                               name, failures)
                failures = 0
            self._tg.start_soon(self._handle, name, stream, slots)

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
            await conn._done.wait()

    # -- one connection -----------------------------------------------------------------------------
    async def _handle(self, listener: str, stream: anyio.abc.SocketStream,
                      slots: anyio.Semaphore | None = None) -> None:
        try:
            await self._run_connection(listener, stream)
        finally:
            if slots is not None:
                slots.release()

    async def _run_connection(self, listener: str, stream: anyio.abc.SocketStream) -> None:
        try:
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = stream.extra(anyio.abc.SocketAttribute.remote_address)
            local = stream.extra(anyio.abc.SocketAttribute.local_address)
        except (OSError, anyio.TypedAttributeLookupError):
            # The peer reset the connection before it was handed over (no peer address any more). Raising here
            # would end the node's task group, i.e. the whole broker.
            await _close_quietly(stream)
            return
        info = ConnectionInfo(peer=tuple(peer[:2]), local=tuple(local[:2]))  # type: ignore[arg-type]
        session = self._factories[listener](info)
        conn = Connection(next(self._ids), listener, session, stream, info.peer, self.clock.now(), raw=raw)
        session.wakeup = conn.wake
        session.abort_transport = conn.abort
        self.connections[conn.id] = conn
        self.on_connect(conn)
        if self.handshake_timeout is not None:
            conn._handshake = self.clock.call_later(self.handshake_timeout, self._handshake_expired, conn)
        try:
            with anyio.CancelScope() as scope:
                conn._scope = scope
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._writer, conn, scope)
                    await self._reader(conn)
                    scope.cancel()
        finally:
            conn.finished = True
            if conn._handshake is not None:
                conn._handshake.cancel()
            with anyio.CancelScope(shield=True):
                await _close_quietly(stream)
            _lose(conn)
            self.connections.pop(conn.id, None)
            conn._done.set()
            self.on_disconnect(conn)

    async def _reader(self, conn: Connection) -> None:
        session = conn.session
        while not (session.closed or session.close_requested):
            if conn.stalled:
                await conn._resumed.wait()
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
                await conn._resumed.wait()
            try:
                session.receive_data(data)
            except Exception:
                # A bug in one session must cost only its own connection, never the listener or the broker.
                logger.exception("fakebroker: session error on connection %s; closing it", conn.id)
                conn.abort()
                return
            conn.wake()
            if conn._handshake is not None and session.established:
                conn._handshake.cancel()
                conn._handshake = None
            if not data:
                return
        # The writer flushes the session's last words, then cancels this task.
        await anyio.sleep_forever()

    async def _writer(self, conn: Connection, scope: anyio.CancelScope) -> None:
        session = conn.session
        while True:
            await conn._wake.wait()
            conn._wake = anyio.Event()
            if conn.stalled:
                await conn._resumed.wait()
            data = session.data_to_send()
            if data:
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

        A connection is settled when its reader is parked in ``receive()``, its socket holds nothing (no data,
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
                    if conn.stalled or conn.finished or conn.session.close_requested:
                        continue
                    if not conn.waiting or _readable(conn.raw):
                        busy = True
                        break
                    state.append((conn.id, conn.reads))
                quiet = 0 if busy or state != last else quiet + 1
                last = state
                await anyio.sleep(0)

    def _handshake_expired(self, conn: Connection) -> None:
        conn._handshake = None
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
                    await conn._done.wait()
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
        await conn._done.wait()

    def stall(self, conn: Connection) -> None:
        if conn.stalled:
            return  # a new event now would leave the reader and writer waiting on one resume() never sets
        conn.stalled = True
        conn._resumed = anyio.Event()

    def resume(self, conn: Connection) -> None:
        conn.stalled = False
        conn._resumed.set()
        conn.wake()

    # -- wall-clock timers --------------------------------------------------------------------------
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
            self.clock.on_schedule = self._timer_wake.set
            delay = None if deadline is None else max(0.0, deadline - self.clock.now())
            with anyio.move_on_after(delay if delay is not None else float("inf")):
                await self._timer_wake.wait()


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


async def _close_quietly(stream: anyio.abc.SocketStream) -> None:
    # The peer may already be gone; there is nothing to report then.
    with contextlib.suppress(Exception):
        await stream.aclose()


__all__ = ["Address", "Connection", "Runtime"]
