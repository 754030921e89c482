"""A Basic Authorization header that is not ASCII (found by the hostile harness): 401 like any other bad
credentials, not a 500 with an ERROR traceback, on statelessd and on the management API."""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlparse

import pytest

from fakebroker import ThreadedBroker


def request(url: str, head: bytes) -> bytes:
    parsed = urlparse(url)
    assert parsed.hostname is not None and parsed.port is not None
    with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
        return answer


@pytest.mark.parametrize(("listener", "line"), [
    ("http_url", b"POST /%2F/amq.topic/k HTTP/1.1"),
    ("management_url", b"GET /api/overview HTTP/1.1"),
])
@pytest.mark.parametrize("credentials", [b"\xff\xfe", b"Z3Vlc3Q6\xc3\xa9", "é:é".encode()])
def test_non_ascii_basic_credentials_get_401(broker: ThreadedBroker, caplog, listener, line, credentials):
    head = (line + b"\r\nHost: x\r\nContent-Length: 0\r\nAuthorization: Basic " + credentials
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n")
    with caplog.at_level(logging.WARNING, logger="fakebroker"):
        answer = request(getattr(broker, listener), head)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:80]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
