"""HTTP input the hostile harness found mishandled, on statelessd and the management API: a Basic
Authorization header that is not ASCII (now 401 like any other bad credentials, not a 500 with an ERROR
traceback), and a Content-Length of Unicode digits (now 400, not a session error)."""

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


@pytest.mark.parametrize("listener", ["http_url", "management_url"])
@pytest.mark.parametrize("length", ["\u00b39".encode("latin-1"), "\u00b2".encode("latin-1"), b"\xbd"])
def test_content_length_of_unicode_digits_is_a_bad_request(broker: ThreadedBroker, caplog, listener, length):
    # Found by the hostile harness: "³9".isdigit() is true in Python, and int() then failed in the session.
    head = b"GET /api/overview HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n"
    with caplog.at_level(logging.WARNING, logger="fakebroker"):
        answer = request(getattr(broker, listener), head)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
