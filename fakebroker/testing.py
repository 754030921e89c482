"""Testing sessions without sockets: a host with no node, a driver, and the conformance check every session passes.

    host = FakeHost()
    driver = SessionDriver(MqttSession(INFO, host))
    out = driver.feed(connect_packet)          # the bytes the session answers

    check_session_contract(mqtt_factory, [connect_packet, subscribe_packet, publish_packet])

:func:`check_session_contract` is in the spirit of ``trio.testing.check_two_way_stream``: whatever a protocol
does, the runtime can rely on what it checks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from .clock import VirtualClock
from .config import Options
from .model import Broker
from .protocols.base import ConnectionInfo, ProtocolStates, Session, SessionHost

S = TypeVar("S")

INFO = ConnectionInfo(peer=("127.0.0.1", 50000), local=("127.0.0.1", 1883))

SessionMaker = Callable[[ConnectionInfo, SessionHost], Session]


class FakeHost:
    """A :class:`~fakebroker.protocols.base.SessionHost` with a real model on a virtual clock, and no node.

    ``options`` are those of :func:`fakebroker.start`. ``events`` records every ``emit(event, *args)``.

    Examples:
        >>> from fakebroker.testing import FakeHost
        >>> host = FakeHost(vhosts=("/", "tenant-a"))
        >>> host.model.vhost("tenant-a").declare_queue("jobs").name
        'jobs'
        >>> host.clock.now()
        0.0
    """

    def __init__(self, **options: Any) -> None:
        self.options = Options.from_kwargs(**options)
        self.clock = VirtualClock()
        self.model = Broker(self.clock, users=self.options.users, vhosts=self.options.vhosts)
        self.stopping = False
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._states = ProtocolStates()

    def state(self, kind: Callable[[], S]) -> S:
        return self._states.get(kind)

    def emit(self, event: str, *args: Any) -> None:
        self.events.append((event, args))
        self.model.emit(event, *args)

    def listening(self) -> dict[str, int]:
        return {}

    def operator(self) -> Any:
        raise RuntimeError("the control plane needs a running broker node (this is a FakeHost)")

    def spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        raise RuntimeError("a FakeHost has no event loop to run tasks on")


class SessionDriver:
    r"""Plays the runtime for one session: feeds bytes, collects output (``output``), counts wake-ups
    (``wakeups``) and notes an abort (``aborted``).

    Examples:
        >>> from fakebroker.testing import INFO, FakeHost, SessionDriver
        >>> from fakebroker.protocols.mqtt.codec import Connect, encode
        >>> from fakebroker.protocols.mqtt.session import MqttSession
        >>> driver = SessionDriver(MqttSession(INFO, FakeHost()))
        >>> driver.feed(encode(Connect(client_id="device-1")))  # CONNACK, accepted
        b' \x02\x00\x00'
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.wakeups = 0
        self.aborted = False
        self.output = bytearray()  # everything the session wrote, in order
        session.wakeup = self._wake
        session.abort_transport = self._abort

    def _wake(self) -> None:
        self.wakeups += 1

    def _abort(self) -> None:
        self.aborted = True
        self.session.connection_lost()

    def feed(self, data: bytes) -> bytes:
        r"""``receive_data(data)``, then whatever the session has to send.

        Examples:
            >>> from fakebroker.testing import INFO, FakeHost, SessionDriver
            >>> from fakebroker.protocols.mqtt.codec import Connect, Subscribe, encode
            >>> from fakebroker.protocols.mqtt.session import MqttSession
            >>> driver = SessionDriver(MqttSession(INFO, FakeHost()))
            >>> _ = driver.feed(encode(Connect(client_id="device-1")))
            >>> driver.feed(encode(Subscribe(1, [("a/#", 0)])))  # SUBACK, QoS 0 granted
            b'\x90\x03\x00\x01\x00'
        """
        self.session.receive_data(data)
        return self.drain()

    def drain(self) -> bytes:
        """What the session queued since the last call, for output that starts elsewhere (a message routed to it,
        a timer).

        Examples:
            >>> from fakebroker.testing import INFO, FakeHost, SessionDriver
            >>> from fakebroker.protocols.mqtt.codec import Connect, encode
            >>> from fakebroker.protocols.mqtt.session import MqttSession
            >>> host = FakeHost()
            >>> driver = SessionDriver(MqttSession(INFO, host))
            >>> _ = driver.feed(encode(Connect(client_id="device-1", keepalive=10)))
            >>> host.clock.advance(15)  # 1.5 x keepalive with nothing read
            >>> driver.drain(), driver.session.state, driver.session.close_reason
            (b'', 'closed', 'keepalive timeout')
        """
        out = self.session.data_to_send()
        self.output += out
        return out


def _chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, max(1, min(len(data) - i, 64)))
        out.append(data[i:i + n])
        i += n
    return out


def _run(factory: SessionMaker, chunks: Sequence[bytes], host_options: dict[str, Any]) -> tuple[bytes, str]:
    host = FakeHost(**host_options)
    session = factory(INFO, host)
    driver = SessionDriver(session)
    for chunk in chunks:
        before = driver.wakeups
        session.receive_data(chunk)
        if session.has_output:
            assert driver.wakeups > before, f"{type(session).__name__} queued output without calling wakeup()"
        out = driver.drain()
        assert not session.has_output, "has_output is still true after data_to_send() drained the session"
        if session.state == "closed" or not out and session.close_requested:
            break
    return bytes(driver.output), session.state


def check_session_contract(factory: SessionMaker, script: Sequence[bytes], *, splits: int = 5,
                           normalize: Callable[[bytes], bytes] = lambda b: b,
                           host_options: dict[str, Any] | None = None) -> None:
    """Fail with an AssertionError unless sessions made by ``factory`` keep the runtime's contract on ``script``
    (the bytes a client sends, in order):

    - the same output and final state whatever way the input is split (whole, byte by byte, random chunks);
    - ``wakeup()`` called whenever output was queued, and ``has_output`` true exactly while output waits;
    - not ``established`` before any input (the handshake timeout relies on it);
    - end of input reported once (``_on_connection_lost`` runs once, however often EOF or a loss is reported);
    - nothing written after the close, even when the clock moves on and timers fire.

    ``normalize`` maps the output before comparing (for protocols that put random ids on the wire);
    ``host_options`` are the :class:`FakeHost`'s.

    Examples:
        >>> from fakebroker.testing import check_session_contract
        >>> from fakebroker.protocols.mqtt.codec import Connect, Disconnect, encode
        >>> from fakebroker.protocols.mqtt.session import MqttSession
        >>> check_session_contract(MqttSession, [encode(Connect(client_id="device-1")), encode(Disconnect())])
    """
    options = host_options or {}
    data = b"".join(script)
    expected_out, expected_state = _run(factory, list(script), options)
    rng = random.Random(1234)
    ways: list[tuple[str, list[bytes]]] = [("whole", [data]),
                                           ("byte by byte", [data[i:i + 1] for i in range(len(data))])]
    ways += [(f"random split #{n}", _chunks(data, rng)) for n in range(splits)]
    for name, chunks in ways:
        out, state = _run(factory, chunks, options)
        assert normalize(out) == normalize(expected_out), (
            f"{name}: output differs from feeding the script frame by frame:\n  {out!r}\n  {expected_out!r}")
        assert state == expected_state, f"{name}: final state {state!r}, expected {expected_state!r}"

    # End of input, reported once; then silence.
    host = FakeHost(**options)
    session = factory(INFO, host)
    driver = SessionDriver(session)
    lost = 0
    original = session._on_connection_lost

    def counting() -> None:
        nonlocal lost
        lost += 1
        original()

    session._on_connection_lost = counting  # type: ignore[method-assign]
    # The runtime closes a connection that does not establish itself in time; nothing is established before
    # the client has sent a byte.
    assert not session.established, "the session is established before the client sent anything"
    for chunk in script:
        driver.feed(chunk)
    was_open = session.state == "open"
    session.receive_data(b"")
    if was_open:
        assert session.state == "closed", f"EOF left an open session {session.state!r}"
    # A closing session learns of the end from the runtime, which calls connection_lost() once it closed.
    session.receive_data(b"")
    session.connection_lost()
    assert lost == 1, f"_on_connection_lost ran {lost} times for one end of input"
    driver.drain()
    session.send(b"late")
    host.clock.advance(10 * 86_400)
    assert not session.has_output and session.data_to_send() == b"", "the session wrote after its close"
