"""Malformed AMQP over real sockets: each answered as RabbitMQ 3.10 answers it, and a bystander on the same
broker keeps consuming."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from kit.amqp import HEADER, method, parse, start_ok
from pamqp import commands as c

import fakebroker

TIMEOUT = 10


class Bystander:
    """A pika consumer in its own thread: proof that one client's garbage costs nobody else anything."""

    def __init__(self, broker: Any) -> None:
        self.received: list[bytes] = []
        self.arrived = threading.Condition()
        self.conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        ch = self.conn.channel()
        ch.queue_declare("bystander")
        ch.basic_consume("bystander", self._on_message, auto_ack=True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stopped = False
        self.thread.start()

    def _on_message(self, ch: Any, m: Any, p: Any, body: bytes) -> None:
        with self.arrived:
            self.received.append(body)
            self.arrived.notify_all()

    def _run(self) -> None:
        while not self.stopped:
            self.conn.process_data_events(time_limit=0.05)

    def still_served(self, broker: Any, body: bytes) -> None:
        broker.publish("", "bystander", body)
        with self.arrived:
            assert self.arrived.wait_for(lambda: body in self.received, timeout=TIMEOUT)

    def close(self) -> None:
        self.stopped = True
        self.thread.join(TIMEOUT)
        self.conn.close()


@pytest.fixture
def broker() -> Iterator[Any]:
    with fakebroker.start() as b:
        yield b


@pytest.fixture
def bystander(broker: Any) -> Iterator[Bystander]:
    b = Bystander(broker)
    yield b
    b.close()


def raw(broker: Any) -> socket.socket:
    sock = socket.create_connection(tuple(broker.amqp), timeout=TIMEOUT)
    return sock


def read_until_eof(sock: socket.socket) -> bytes:
    out = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return out
        out += data


def opened(broker: Any) -> socket.socket:
    """A raw connection through the handshake, with channel 1 open."""
    sock = raw(broker)
    sock.sendall(HEADER)
    _read_frames(sock, 1)
    sock.sendall(start_ok())
    _read_frames(sock, 1)
    sock.sendall(method(0, c.Connection.TuneOk(2047, 131072, 0)) + method(0, c.Connection.Open("/"))
                 + method(1, c.Channel.Open()))
    _read_frames(sock, 2)
    return sock


def _read_frames(sock: socket.socket, n: int) -> list[tuple[int, Any]]:
    data = b""
    while True:
        try:
            frames = parse(data)
        except Exception:  # noqa: BLE001 - incomplete: read on
            frames = []
        if len(frames) >= n:
            return frames
        chunk = sock.recv(65536)
        assert chunk, f"connection closed early after {data!r}"
        data += chunk


def closed_with(sock: socket.socket) -> tuple[int, str, int, int]:
    """The connection.close the broker sent before it closed the socket (without waiting for close-ok)."""
    frames = parse(read_until_eof(sock))
    (channel, close), = frames
    assert channel == 0 and isinstance(close, c.Connection.Close)
    return close.reply_code, close.reply_text, close.class_id, close.method_id


@pytest.mark.parametrize("header", [b"AMQP\x00\x00\x09\x00", b"AMQP\x01\x01\x00\x09", b"HELLO WORLD!",
                                    b"GET / HTTP/1.1\r\n\r\n"])
def test_a_wrong_protocol_header(broker: Any, bystander: Bystander, header: bytes) -> None:
    sock = raw(broker)
    sock.sendall(header)
    assert read_until_eof(sock) == HEADER
    bystander.still_served(broker, b"after a wrong header")


def test_a_bad_frame_end(broker: Any, bystander: Bystander) -> None:
    sock = opened(broker)
    sock.sendall(method(1, c.Basic.Qos(0, 1))[:-1] + b"\x00")
    code, text, _, _ = closed_with(sock)
    assert (code, text) == (501, "FRAME_ERROR - type 1, all octets = <<0,60,0,10,0,0,0,0,0,1,0>>: "
                                 "{invalid_frame_end_marker,0}")
    bystander.still_served(broker, b"after a bad frame end")


def test_a_frame_over_frame_max(broker: Any, bystander: Bystander) -> None:
    sock = opened(broker)
    sock.sendall(struct.pack(">BHI", 1, 1, 200_000))
    assert closed_with(sock) == (501, "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,200000,131064}",
                                 0, 0)
    bystander.still_served(broker, b"after a large frame")


def test_an_unknown_frame_type(broker: Any, bystander: Bystander) -> None:
    sock = opened(broker)
    sock.sendall(struct.pack(">BHI", 9, 0, 3) + b"abc\xce")
    assert closed_with(sock) == (501, 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame', 0, 0)
    bystander.still_served(broker, b"after an unknown frame type")


def test_an_undecodable_method(broker: Any, bystander: Bystander) -> None:
    sock = opened(broker)
    sock.sendall(struct.pack(">BHI", 1, 1, 5) + struct.pack(">HH", 50, 10) + b"\x00\xce")
    (channel, close), = _read_frames(sock, 1)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        501, "FRAME_ERROR - cannot decode <<0>>", 50, 10)
    # Unlike the framing errors above, an undecodable method waits for the close-ok, as other errors do.
    sock.sendall(method(0, c.Connection.CloseOk()))
    assert read_until_eof(sock) == b""
    bystander.still_served(broker, b"after an undecodable method")


def test_an_undefined_method_drops_the_socket(broker: Any, bystander: Bystander) -> None:
    sock = opened(broker)
    sock.sendall(struct.pack(">BHI", 1, 1, 4) + struct.pack(">HH", 60, 999) + b"\xce")
    assert read_until_eof(sock) == b""
    bystander.still_served(broker, b"after an undefined method")


def test_a_heartbeat_on_a_channel(broker: Any, bystander: Bystander) -> None:
    sock = opened(broker)
    sock.sendall(b"\x08\x00\x01\x00\x00\x00\x00\xce")
    channel, close = _read_frames(sock, 1)[0]
    assert (close.reply_code, close.reply_text) == (505, "UNEXPECTED_FRAME - type 8, all octets = <<>>")
    sock.sendall(method(0, c.Connection.CloseOk()))
    assert read_until_eof(sock) == b""
    bystander.still_served(broker, b"after a heartbeat on a channel")


def test_garbage_after_the_header(broker: Any, bystander: Bystander) -> None:
    sock = raw(broker)
    sock.sendall(HEADER)
    _read_frames(sock, 1)
    sock.sendall(b"\xff" * 64)
    # A frame error before connection.open is a handshake error: RabbitMQ closes without connection.close.
    assert read_until_eof(sock) == b""
    bystander.still_served(broker, b"after garbage")


@pytest.mark.parametrize("stage", ["start-ok", "tune-ok", "open"])
def test_a_handshake_method_with_trailing_bytes_closes_silently(broker: Any, bystander: Bystander,
                                                                 stage: str) -> None:
    def plus_a_byte(frame: bytes) -> bytes:
        return frame[:3] + (len(frame) - 7).to_bytes(4, "big") + frame[7:-1] + b"\x00\xce"

    sent = [start_ok(), method(0, c.Connection.TuneOk(2047, 131072, 0)), method(0, c.Connection.Open("/"))]
    last = ["start-ok", "tune-ok", "open"].index(stage)
    sock = raw(broker)
    sock.sendall(HEADER)
    _read_frames(sock, 1)
    for i, frame in enumerate(sent[:last + 1]):
        sock.sendall(plus_a_byte(frame) if i == last else frame)
        if i == 0 and i < last:
            _read_frames(sock, 1)  # tune
    # As any error before connection.open: no connection.close (RabbitMQ 3.10 closes after 3 s, see differences).
    assert read_until_eof(sock) == b""
    bystander.still_served(broker, b"after a long handshake method")
