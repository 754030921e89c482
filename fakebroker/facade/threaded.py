"""The threaded face: :func:`start` runs the broker on its own event loop thread."""

from __future__ import annotations

import atexit
import contextlib
import functools
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import anyio.from_thread

from ..config import Options
from ..model import LoggedMessage
from ..node import Node
from ..observe import (
    Journal,
    MessageTimeout,
)
from .api import BrokerAPI
from .core import _run_node
from .faults import Target
from .views import ClientInfo, MessageLog

T = TypeVar("T")


# -- threaded face ----------------------------------------------------------------------------------
class ClockProxy:
    """The broker's clock, reached from another thread."""

    def __init__(self, broker: ThreadedBroker) -> None:
        self._broker = broker

    def now(self) -> float:
        """The broker's time in seconds: 0 at start on the virtual clock, moved only by :meth:`advance`.

        Examples:
            >>> broker.clock.advance(1.5)
            >>> broker.clock.now()
            1.5
        """
        return self._broker._call(self._broker._node.clock.now)

    def advance(self, seconds: float) -> None:
        """Fire every timer due within ``seconds``; returns once their effects are applied and written out.

        Message TTLs, queue expiry, keepalives, MQTT subscription TTLs and :meth:`~fakebroker.ThreadedBroker.delay_next`
        all run on this clock. What clients had already sent reaches the broker first; bytes a client has not
        written yet are not waited for. Only for a broker on the virtual clock (TypeError otherwise).

        Examples:
            >>> broker.declare_queue("jobs", arguments={"x-message-ttl": 60_000})
            'jobs'
            >>> _ = broker.publish("", "jobs", b"job 1")
            >>> broker.clock.advance(60)
            >>> broker.queues["jobs"].messages
            0
        """
        self._broker._call_async(self._broker._advance, seconds)

    def pending(self) -> int:
        """How many timers are scheduled (useful to check that nothing is left waiting).

        Examples:
            >>> before = broker.clock.pending()
            >>> broker.declare_queue("jobs", arguments={"x-expires": 30_000})
            'jobs'
            >>> broker.clock.pending() - before
            1
        """
        return self._broker._call(self._broker._node.clock.pending)

    def __repr__(self) -> str:
        return f"<ClockProxy now={self.now():.3f}>"


class ThreadedBroker(BrokerAPI):
    """A broker running on its own event loop in a background thread; see :func:`start`."""

    def __init__(self, loop: _LoopThread) -> None:
        self._portal = loop.portal
        self._loop = loop
        self._loop_thread = loop.node.thread_id
        self.thread: threading.Thread | None = loop.thread
        """The thread running the broker's event loop (gone once :meth:`stop` returns)."""
        self.stopped = False
        """True once :meth:`stop` has run."""
        self._setup(loop.node, loop.journal)

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
        """The broker's clock, callable from the test's thread: ``now()``, ``advance(seconds)``, ``pending()``.

        Examples:
            >>> broker.clock.now()
            0.0
        """
        return ClockProxy(self)

    def disconnect(self, client_id: Target) -> None:
        """Drop the client's TCP connection with no protocol goodbye (its Last Will fires).

        ``client_id`` names the connection by client id (every connection of it), by connection id, or by a
        :class:`~fakebroker.ClientInfo` of :attr:`clients`; LookupError when none is connected.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1", will=("status/device-1", b"offline", 1, True))
            >>> device.connect()
            (False, 0)
            >>> broker.disconnect("device-1")
            >>> broker.wait_for_message(topic="status/device-1").body
            b'offline'
        """
        self._call_async(self._disconnect, client_id)

    def reset(self) -> None:
        """Empty the broker between tests as if it had just started: every client connection dropped (no Last
        Wills), every queue, exchange, binding, retained message, message fault and log entry gone; vhosts and
        users as the options give them. The clock keeps its time.

        Examples:
            >>> broker.declare_queue("leftover")
            'leftover'
            >>> broker.reset()
            >>> "leftover" in broker.queues, len(broker.messages)
            (False, 0)
        """
        self._call_async(self._reset)

    def wait_for_message(self, timeout: float = 5.0, **criteria: Any) -> LoggedMessage:
        """Block until a message matching ``criteria`` has been routed, and return its log entry.

        A message already in the log counts. With ``delivered_to=client_id`` it waits until the message was
        delivered to that client, and returns once the bytes are written to its socket. ``timeout`` is in
        real seconds (the virtual clock does not move while waiting). On timeout it raises
        :class:`~fakebroker.observe.MessageTimeout` (an AssertionError and a TimeoutError) listing the
        messages the broker saw instead, closest first, with how each one differs.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.publish("status/device-1", b"online")  # QoS 0: returns once written, not yet routed
            >>> broker.wait_for_message(topic="status/+", timeout=2).client_id
            'device-1'
        """
        __tracebackhide__ = True
        return self.wait_for_messages(1, timeout, **criteria)[0]

    def wait_for_messages(self, count: int, timeout: float = 5.0, **criteria: Any) -> MessageLog:
        """Like :meth:`wait_for_message`, for at least ``count`` matching messages; returns them all.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> for n in range(3):
            ...     device.publish(f"readings/{n}", b"21.5")
            >>> broker.wait_for_messages(3, topic="readings/#").bodies
            [b'21.5', b'21.5', b'21.5']
        """
        __tracebackhide__ = True
        try:
            log: MessageLog = self._call_async(self._wait, count, timeout, criteria)
        except MessageTimeout as exc:
            raise MessageTimeout(str(exc)) from None  # raised here, not in the broker's thread
        return log

    def wait_for_client(self, client_id: str, *, subscribed: str | None = None, timeout: float = 5.0) -> ClientInfo:
        """Block until a client with ``client_id`` is connected (and, with ``subscribed``, has that filter or
        destination among its subscriptions); returns it. On timeout, the error lists the connected clients.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> _ = device.paho.subscribe("commands/#", qos=1)  # as application code would: no wait for the SUBACK
            >>> broker.wait_for_client("device-1", subscribed="commands/#").subscriptions
            {'commands/#': 1}
        """
        __tracebackhide__ = True
        try:
            found = self._call_async(self._wait_client, client_id, True, subscribed, timeout)
        except MessageTimeout as exc:
            raise MessageTimeout(str(exc)) from None
        assert found is not None
        return found  # type: ignore[no-any-return]

    def wait_for_disconnect(self, client_id: str, *, timeout: float = 5.0) -> None:
        """Block until no connection with ``client_id`` is left (at once when none is).

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.abort()  # the device loses power: the broker sees a reset
            >>> broker.wait_for_disconnect("device-1")
        """
        __tracebackhide__ = True
        try:
            self._call_async(self._wait_client, client_id, False, None, timeout)
        except MessageTimeout as exc:
            raise MessageTimeout(str(exc)) from None

    def restart(self) -> None:
        """Restart the broker as a RabbitMQ node restart (``rabbitmqctl stop_app; start_app``).

        Every connection drops with no Last Will (RabbitMQ stops its MQTT plugin before anything else); the
        broker comes back on the same ports with durable exchanges, durable queues and their persistent
        messages (``delivery_mode`` 2, which MQTT QoS 1 publishes have), bindings between durable things,
        persistent MQTT sessions and retained messages. Transient queues, exchanges and messages are gone.
        Inside :meth:`refuse_connections` the listeners stay closed until that block ends.

        Examples:
            >>> broker.declare_queue("orders", durable=True)
            'orders'
            >>> broker.declare_queue("scratch")
            'scratch'
            >>> broker.restart()
            >>> list(broker.queues)
            ['orders']
        """
        self._call_async(self._restart)

    @contextmanager
    def refuse_connections(self) -> Iterator[None]:
        """Within the ``with`` block new connections are refused (ECONNREFUSED): the listening sockets are
        closed, as if the broker were down. Open connections stay. On exit the broker listens again on the
        same ports.

        Examples:
            >>> with broker.refuse_connections():
            ...     MqttClient(broker.mqtt, "device-1").connect()
            Traceback (most recent call last):
              ...
            ConnectionRefusedError: ...
        """
        self._call_async(self._refuse, True)
        try:
            yield
        finally:
            if not self.stopped:
                self._call_async(self._refuse, False)

    def stop(self) -> None:
        """Close every connection and stop the broker's thread (the ``with`` block of :func:`start` does it).
        Calling it again does nothing; the message log and ``traffic_report()`` stay readable.

        Examples:
            >>> _ = broker.publish("amq.topic", "sensors.temp", b"21.5")
            >>> broker.stop()
            >>> len(broker.messages)
            1
        """
        if self.stopped:
            return
        if self._on_loop():
            raise RuntimeError("a broker cannot be stopped from its own callbacks; stop it from the test's thread")
        try:
            self._loop.close()
        finally:
            self.stopped = True
            _running.pop(id(self), None)

    def __enter__(self) -> ThreadedBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else ", ".join(f"{k}={v.host}:{v.port}" for k, v in self.addresses.items())
        return f"<fakebroker.ThreadedBroker {state}>"




class _LoopThread:
    """A node on an event loop in a daemon thread, reached through a blocking portal.

    Daemon, so that a process which never stops its broker still exits; :func:`_stop_at_exit` stops such brokers
    first (atexit handlers run while daemon threads still do), closing their sockets in order. The node starts
    and stops inside the thread's main task: one hand-over between threads each way.
    """

    def __init__(self, options: Options) -> None:
        ready: Future[tuple[anyio.from_thread.BlockingPortal, Node, Journal]] = Future()
        self._error: BaseException | None = None

        async def main() -> None:
            async with _run_node(options) as (node, journal), anyio.from_thread.BlockingPortal() as portal:
                ready.set_result((portal, node, journal))
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(main, backend="asyncio")
            except BaseException as exc:  # reaches the caller of start() or stop()
                if ready.done():
                    self._error = exc
                else:
                    ready.set_exception(exc)

        self.thread = threading.Thread(target=run, name="fakebroker", daemon=True)
        self.thread.start()
        self.portal, self.node, self.journal = ready.result()

    def close(self) -> None:
        """Stop the node and its loop; raises what went wrong while the node shut down."""
        with contextlib.suppress(RuntimeError):  # the loop has already ended
            self.portal.start_task_soon(self.portal.stop)
        self.thread.join()
        if self._error is not None:
            raise self._error


#: Brokers started and not stopped yet, by id: stopped at interpreter exit.
_running: dict[int, ThreadedBroker] = {}


@atexit.register
def _stop_at_exit() -> None:
    for broker in list(_running.values()):
        try:
            broker.stop()
        except Exception as exc:  # exiting anyway: say why the broker did not stop cleanly, then go on
            print(f"fakebroker: stopping a broker at exit failed: {exc!r}", file=sys.stderr)


def start(**options: Any) -> ThreadedBroker:
    """Start a broker on its own event loop thread; returns once every listener accepts connections.

    ``options`` are those of :class:`~fakebroker.Options` (``fakebroker.Options.names()`` lists them); every
    listener takes a free port unless its ``<listener>_port`` says otherwise. Use it as a context manager, or
    call ``.stop()``. A broker still running when the interpreter exits is stopped then;
    it never keeps a process alive.

    Examples:
        >>> with fakebroker.start(vhosts=("/", "tenant-a"), mqtt_subscription_ttl=60_000) as other:
        ...     other.declare_queue("jobs", vhost="tenant-a")
        'jobs'
    """
    broker = ThreadedBroker(_LoopThread(Options.from_kwargs(**options)))
    _running[id(broker)] = broker
    return broker
