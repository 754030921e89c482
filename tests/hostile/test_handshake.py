"""Connections that never complete their protocol's opening are closed after ``handshake_timeout`` seconds of
broker-clock time (RabbitMQ closed such MQTT connections after about 10 s), and a listener holds at most
``max_connections`` connections."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import urlparse

import pytest
from wire import Connect, RawMqtt, encode

from fakebroker import ThreadedBroker
from fakebroker.protocols.mqtt.codec import Pingreq, Pingresp

CONNECT = encode(Connect(client_id="never-finished"))
UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Protocol: mqtt\r\n\r\n")

#: What a client that never finishes sends: (listener, bytes).
STUCK = {
    "mqtt-nothing": ("mqtt", b""),
    "mqtt-one-byte": ("mqtt", CONNECT[:1]),
    "mqtt-length-prefix": ("mqtt", CONNECT[:2]),
    "mqtt-partial-connect": ("mqtt", CONNECT[:-3]),
    "ws-nothing": ("web_mqtt", b""),
    "ws-partial-request": ("web_mqtt", UPGRADE[:40]),
    "ws-upgraded-no-connect": ("web_mqtt", UPGRADE),
    # One masked binary frame (mask key 0) with the start of a CONNECT.
    "ws-upgraded-partial-connect": ("web_mqtt", UPGRADE + b"\x82\x85\0\0\0\0" + CONNECT[:5]),
}


def address(broker: ThreadedBroker, listener: str) -> tuple[str, int]:
    if listener == "mqtt":
        return tuple(broker.mqtt)  # type: ignore[return-value]
    url = urlparse(broker.web_mqtt_url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def until(predicate: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def open_stuck(broker: ThreadedBroker, case: str, copies: int = 3) -> list[socket.socket]:
    listener, data = STUCK[case]
    before = len(broker.clients)
    socks = []
    for _ in range(copies):
        sock = socket.create_connection(address(broker, listener), timeout=5)
        if data:
            sock.sendall(data)
        socks.append(sock)
    until(lambda: len(broker.clients) == before + copies, "the stuck connections to be accepted")
    return socks


def is_closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass  # a 101 answer comes before the close
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


def is_open(sock: socket.socket) -> bool:
    """No end of stream within a moment (whatever data, such as a 101 answer, comes first)."""
    sock.settimeout(0.05)
    try:
        while sock.recv(65536):
            pass
        return False
    except TimeoutError:
        return True
    except OSError:
        return False


@pytest.mark.parametrize("case", list(STUCK))
def test_unfinished_opening_is_closed_after_the_handshake_timeout(broker, bystander, case):
    socks = open_stuck(broker, case)
    broker.clock.advance(9.9)
    assert all(is_open(s) for s in socks)
    broker.clock.advance(0.2)
    assert all(is_closed(s) for s in socks)
    until(lambda: len(broker.clients) == 2, "only the bystander's two connections to remain")
    bystander.check()
    for s in socks:
        s.close()


def test_a_completed_opening_is_not_closed(broker, raw, bystander):
    r = raw()
    r.connect()
    broker.clock.advance(30)
    r.send(Pingreq())
    assert r.recv() == Pingresp()
    bystander.check()


@pytest.mark.fakebroker(handshake_timeout=2.5)
def test_handshake_timeout_is_an_option(broker, bystander):
    socks = open_stuck(broker, "mqtt-partial-connect")
    broker.clock.advance(2.4)
    assert all(is_open(s) for s in socks)
    broker.clock.advance(0.2)
    assert all(is_closed(s) for s in socks)
    bystander.check()
    for s in socks:
        s.close()


@pytest.mark.fakebroker(handshake_timeout=None)
def test_no_handshake_timeout(broker, bystander):
    socks = open_stuck(broker, "mqtt-one-byte")
    broker.clock.advance(30 * 86_400)
    assert all(is_open(s) for s in socks)
    bystander.check()
    for s in socks:
        s.close()


@pytest.mark.fakebroker(max_connections=3, web_mqtt_port=None)
def test_listener_holds_at_most_max_connections(broker, bystander):
    third = RawMqtt(tuple(broker.mqtt))  # type: ignore[arg-type]
    third.connect()
    waiting = RawMqtt(tuple(broker.mqtt), timeout=0.3)  # TCP connects (the backlog) but is not accepted
    waiting.send(Connect(client_id="fourth"))
    with pytest.raises(AssertionError, match="no packet"):
        waiting.recv(timeout=0.3)
    assert len(broker.clients) == 3
    third.close()
    packet = waiting.recv(timeout=5)  # accepted once a slot is free
    assert packet.return_code == 0  # type: ignore[union-attr]
    bystander.check()
    waiting.close()
