"""MQTT over WebSocket (RabbitMQ's web_mqtt on /ws): the handshake, and the same broker behind it."""

from __future__ import annotations

import base64
import os
import socket

import paho.mqtt.client as mqtt
import pytest
from contractlib import TIMEOUT, Backend

from fakebroker.protocols.mqtt.codec import Publish


def handshake(backend: Backend, path: str = "/ws", protocols: str | None = "mqtt") -> tuple[int, str | None]:
    """(HTTP status, Sec-WebSocket-Protocol of the answer or None) for an upgrade request."""
    with socket.create_connection(backend.web_mqtt, timeout=TIMEOUT) as sock:
        host, port = backend.web_mqtt
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                   "Sec-WebSocket-Version: 13\r\n")
        if protocols is not None:
            request += f"Sec-WebSocket-Protocol: {protocols}\r\n"
        sock.sendall((request + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                break
            head += data
    lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers.get("sec-websocket-protocol")


@pytest.mark.parametrize(
    ("path", "protocols", "expected"),
    [("/ws", "mqtt", (101, "mqtt")), ("/ws", "mqttv3.1", (101, "mqttv3.1")), ("/ws", None, (101, None)),
     ("/ws/", "mqtt", (101, "mqtt")), ("/ws?x=1", "mqtt", (101, "mqtt")), ("/", "mqtt", (404, None)),
     ("/mqtt", "mqtt", (404, None))],
)
def test_handshake(backend: Backend, path: str, protocols: str | None, expected: tuple[int, str | None]) -> None:
    assert handshake(backend, path, protocols) == expected


@pytest.mark.difference("mqtt-over-websocket-only-mqtt-subprotocols-are-selected")
@pytest.mark.parametrize(("protocols", "rabbitmq", "fake"),
                         [("foo", "foo", None), ("mqttv3.1, mqtt", "mqttv3.1, mqtt", "mqtt")])
def test_handshake_subprotocol_echo(backend: Backend, protocols: str, rabbitmq: str, fake: str | None) -> None:
    assert handshake(backend, "/ws", protocols) == (101, fake if backend.is_fake else rabbitmq)


@pytest.mark.parametrize("protocol", [mqtt.MQTTv31, mqtt.MQTTv311], ids=["v31", "v311"])
def test_round_trip_between_websocket_and_tcp(backend: Backend, protocol: int) -> None:
    ws = backend.paho("ws", websocket=True, protocol=protocol)
    assert ws.connect() == (False, 0)
    assert ws.subscribe("ws/#", 1) == [1]
    tcp = backend.raw()
    tcp.connect(backend.cid("tcp"))
    tcp.subscribe(("tcp/#", 0))
    tcp.publish("ws/in", b"to websocket", 1)
    [m] = ws.wait_messages(1)
    assert (m.topic, m.payload, m.qos, m.retain) == ("ws/in", b"to websocket", 1, False)
    ws.publish("tcp/in", b"from websocket", 1)
    assert tcp.recv_publish() == Publish("tcp/in", b"from websocket", 0, False, False, None)


def test_websocket_will_on_network_loss(backend: Backend) -> None:
    watcher = backend.watcher(("wsw/#", 1))
    ws = backend.paho("ws", websocket=True, will=("wsw/gone", b"ws will", 1, False))
    assert ws.connect() == (False, 0)
    backend.disconnect(ws.client_id)
    assert watcher.recv_publish() == Publish("wsw/gone", b"ws will", 1, False, False, 1)
