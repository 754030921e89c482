"""AMQP 0-9-1 for the contract scenarios: pika's blocking client logged into the test's own vhost, on either
backend (fakebroker's ``amqp`` listener, or the real node's port 5672)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pika
import rabbitmq
from contractlib import TIMEOUT, Backend, FakeBackend
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

AMQP_PORT = 5672


def address(backend: Backend) -> tuple[str, int]:
    if backend.is_fake:
        host, port = backend.broker.amqp  # type: ignore[attr-defined]
        return (host, port)
    own: tuple[str, int] | None = getattr(backend, "amqp_address", None)  # a private node (privatenode.py)
    return own or (rabbitmq.HOST, AMQP_PORT)


def connect(backend: Backend, *, vhost: str | None = None, user: str = "guest", password: str = "guest",
            **params: Any) -> pika.BlockingConnection:
    """A pika connection into the test's vhost, closed when the backend is."""
    host, port = address(backend)
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host, port, backend.vhost if vhost is None else vhost, pika.PlainCredentials(user, password),
        connection_attempts=1, **params))
    backend._owned.append(conn)
    return conn


def channel(backend: Backend) -> BlockingChannel:
    return connect(backend).channel()


def channel_error(action: Callable[[], Any]) -> tuple[int, str]:
    """Run ``action``; it must make the broker close the channel. Returns (reply code, reply text)."""
    try:
        action()
    except ChannelClosedByBroker as exc:
        return exc.reply_code, exc.reply_text
    raise AssertionError("the channel was not closed by the broker")


def connection_error(action: Callable[[], Any]) -> tuple[int, str]:
    """Run ``action``; it must make the broker close the connection. Returns (reply code, reply text)."""
    try:
        action()
    except ConnectionClosedByBroker as exc:
        return exc.reply_code, exc.reply_text
    raise AssertionError("the connection was not closed by the broker")


class Collector:
    """A consumer callback that keeps (method, properties, body) and can ack; ``wait(n)`` pumps pika's I/O."""

    def __init__(self, conn: pika.BlockingConnection, ack: bool = False) -> None:
        self.conn = conn
        self.ack = ack
        self.items: list[tuple[Any, Any, bytes]] = []

    def __call__(self, ch: BlockingChannel, method: Any, props: Any, body: bytes) -> None:
        self.items.append((method, props, body))
        if self.ack:
            ch.basic_ack(method.delivery_tag)

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, _, body in self.items]

    def wait(self, count: int) -> list[tuple[Any, Any, bytes]]:
        deadline = time.monotonic() + TIMEOUT
        while len(self.items) < count:
            assert time.monotonic() < deadline, f"timed out waiting for {count} deliveries, got {len(self.items)}"
            self.conn.process_data_events(time_limit=0.02)
        return self.items

    def settle(self, quiet: float) -> list[tuple[Any, Any, bytes]]:
        """Pump for ``quiet`` seconds: whatever else is coming has come."""
        deadline = time.monotonic() + quiet
        while time.monotonic() < deadline:
            self.conn.process_data_events(time_limit=0.02)
        return self.items


def pump(conn: pika.BlockingConnection, until: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not until():
        assert time.monotonic() < deadline, "timed out"
        conn.process_data_events(time_limit=0.02)


def resized(frame: bytes, payload: bytes) -> bytes:
    """``frame`` (one frame, as pamqp marshals it) with ``payload`` in place of its own: arguments cut short, or
    with bytes after them."""
    return frame[:3] + len(payload).to_bytes(4, "big") + payload + frame[-1:]


def payload_of(frame: bytes) -> bytes:
    return frame[7:-1]


class RawAmqp:
    """AMQP on a plain socket with pamqp, for what pika will not send (a reused consumer tag, ``immediate``)
    and byte-level checks. ``call`` sends frames and reads until the answer of the wanted kind arrives."""

    def __init__(self, backend: Backend, vhost: str | None = None,
                 capabilities: dict[str, bool] | None = None, heartbeat: int = 0) -> None:
        import socket

        from pamqp import commands as c

        self.c = c
        self.sock = socket.create_connection(address(backend), timeout=TIMEOUT)
        backend._owned.append(self)
        self.buf = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(c.Connection.Start)
        caps = {"authentication_failure_close": True, "consumer_cancel_notify": True, **(capabilities or {})}
        self.send(0, c.Connection.StartOk(client_properties={"capabilities": caps},
                                          mechanism="PLAIN", response="\0guest\0guest"))
        tune = self.expect(c.Connection.Tune)
        self.send(0, c.Connection.TuneOk(tune.channel_max, tune.frame_max, heartbeat))
        self.send(0, c.Connection.Open(backend.vhost if vhost is None else vhost))
        self.expect(c.Connection.OpenOk)

    def send(self, channel: int, method: Any) -> None:
        from pamqp import frame

        self.sock.sendall(frame.marshal(method, channel))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self) -> tuple[int, Any]:
        """The next frame; (-1, None) when the broker closed the socket (with a FIN, or with an RST as RabbitMQ
        does after some errors)."""
        from pamqp import frame

        while True:
            if self.buf:
                try:
                    used, channel, value = frame.unmarshal(self.buf)
                except Exception:  # noqa: BLE001 - an incomplete frame: read more
                    pass
                else:
                    self.buf = self.buf[used:]
                    return channel, value
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return -1, None
            self.buf += data

    def frames_within(self, seconds: float) -> list[tuple[int, Any]]:
        """Every frame that arrives within ``seconds`` (a scenario's quiet period); (-1, None) for a close."""
        deadline = time.monotonic() + seconds
        got: list[tuple[int, Any]] = []
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                got.append(self.frame())
                if got[-1][0] == -1:
                    break
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(TIMEOUT)
        return got

    def expect(self, kind: type) -> Any:
        """The next frame, which must be a ``kind`` (heartbeat frames before it are skipped)."""
        from pamqp.heartbeat import Heartbeat

        channel, value = self.frame()
        while isinstance(value, Heartbeat) and kind is not Heartbeat:
            channel, value = self.frame()
        assert isinstance(value, kind), (channel, value)
        return value

    def close(self) -> None:
        self.sock.close()


class FakeAlarmBackend(FakeBackend):
    """The fake side of the alarm scenarios (the real side is ``privatenode.PrivateRabbitBackend``): the
    node-wide alarm is ``broker.block()``."""

    def alarm(self, resource: str = "memory") -> None:
        self.broker.block(reason=f"low on {resource}")

    def clear_alarm(self) -> None:
        self.broker.unblock()

    def advance(self, seconds: float) -> None:
        self.broker.clock.advance(seconds)

    def connection_states(self) -> list[str]:
        """The management API's ``state`` of each AMQP connection, sorted."""
        import json
        import urllib.request

        request = urllib.request.Request(self.broker.management_url + "/api/connections",
                                         headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return sorted(c["state"] for c in json.load(response))
