"""Bytes above 0x7f in a WebSocket upgrade request's headers: a 400 like any other bad upgrade, nothing logged
at ERROR, and the broker keeps serving."""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlparse

import pytest

from fakebroker import ThreadedBroker

HEAD = [
    b"GET /ws HTTP/1.1",
    b"Host: localhost",
    b"Upgrade: websocket",
    b"Connection: Upgrade",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    b"Sec-WebSocket-Version: 13",
    b"Sec-WebSocket-Protocol: mqtt",
]
BAD_LINES = {
    "connection": (3, b"Connection: Upgrade\xb8"),
    "subprotocol": (6, b"Sec-WebSocket-Protocol: mqtt\xff"),
    "host": (1, b"Host: \xff\xfe.example"),
    "version": (5, b"Sec-WebSocket-Version: 1\xb3"),
}


def upgrade(broker: ThreadedBroker, lines: list[bytes]) -> bytes:
    url = urlparse(broker.web_mqtt_url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
        if not answer.startswith(b"HTTP/1.1 101 "):
            assert sock.recv(4096) == b"", "a refused upgrade must be closed"
        return answer


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_non_ascii_header_gets_400(broker, bystander, caplog, case):
    index, line = BAD_LINES[case]
    lines = list(HEAD)
    lines[index] = line
    with caplog.at_level(logging.WARNING, logger="fakebroker"):
        answer = upgrade(broker, lines)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [c.listener for c in broker.clients] == ["mqtt", "mqtt"]  # the bystander's two; the rejected one is gone
    assert upgrade(broker, HEAD).startswith(b"HTTP/1.1 101 ")
    bystander.check()
