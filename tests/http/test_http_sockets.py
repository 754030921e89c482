"""statelessd and the management API over real sockets: requests, raw sockets, the chapter's example."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from httptestlib import parse_replies, request

import fakebroker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TIMEOUT = 5.0


@pytest.fixture
def broker() -> Iterator[fakebroker.ThreadedBroker]:
    with fakebroker.start(http_max_body=4096) as b:
        b.declare_queue("q")
        b.bind("q", "amq.topic", "#")
        yield b


def connect(url: str) -> socket.socket:
    parts = urlparse(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def read_replies(sock: socket.socket, count: int) -> list:  # type: ignore[type-arg]
    data = b""
    while True:
        try:
            replies = parse_replies(data)
        except (AssertionError, ValueError, IndexError):
            replies = []
        if len(replies) >= count and data.endswith(replies[-1].body):
            return replies
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk


def test_urls_and_addresses(broker: fakebroker.ThreadedBroker) -> None:
    assert broker.http_url == "http://{}:{}".format(*broker.addresses["http"])
    assert broker.management_url == "http://{}:{}".format(*broker.addresses["management"])


def test_keep_alive_publishes_with_requests(broker: fakebroker.ThreadedBroker) -> None:
    with requests.Session() as http:
        http.auth = ("guest", "guest")
        for n in range(20):
            r = http.post(f"{broker.http_url}/%2F/amq.topic/sensor.{n}", data={"body": f"m{n}"}, timeout=TIMEOUT)
            assert r.status_code == 204
    assert [m.body for m in broker.peek("q")] == [f"m{n}".encode() for n in range(20)]
    [client] = [c for c in broker.clients if c.listener == "http"]  # one connection carried them all
    assert client.requests == 20


def test_every_status_over_a_socket(broker: fakebroker.ThreadedBroker) -> None:
    base = broker.http_url
    assert requests.post(f"{base}/%2F/amq.topic/k", data={"body": "x"}, timeout=TIMEOUT).status_code == 401
    auth = ("guest", "guest")
    assert requests.post(f"{base}/%2F/amq.topic", data={"body": "x"}, auth=auth, timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{base}/%2F/amq.topic/k", auth=auth, timeout=TIMEOUT).status_code == 405
    bad = requests.post(f"{base}/%2F/amq.topic/k", data={"body": "x", "priority": "high"}, auth=auth,
                        timeout=TIMEOUT)
    assert (bad.status_code, bad.headers["content-type"]) == (400, "text/plain; charset=utf-8")
    assert "priority must be an integer" in bad.text
    # The pair "/:guest" is open already (statelessd does not check passwords per request): another user.
    assert requests.post(f"{base}/%2F/amq.topic/k", data={"body": "x"}, auth=("nobody", "bad"),
                         timeout=TIMEOUT).status_code == 204
    assert requests.post(f"{base}/%2F/amq.topic/k", data={"body": "x"}, auth=("nobody", "bad"),
                         timeout=TIMEOUT).status_code == 424
    stats = requests.get(f"{base}/stats", timeout=TIMEOUT).json()
    assert stats["connections"]["/:nobody"]["connected"] is None
    assert stats["connections"]["/:guest"]["connected"] is True


def test_the_deny_state_ends_when_the_broker_clock_reaches_a_successful_reconnect(
        broker: fakebroker.ThreadedBroker) -> None:
    url = f"{broker.http_url}/%2F/amq.topic/k"
    assert requests.post(url, data={"body": "buffered"}, auth=("app", "pw"), timeout=TIMEOUT).status_code == 204
    assert requests.post(url, data={"body": "x"}, auth=("app", "pw"), timeout=TIMEOUT).status_code == 424
    broker._call(lambda: broker._node.model.users.__setitem__("app", "pw"))
    broker.clock.advance(5)
    assert requests.post(url, data={"body": "after"}, auth=("app", "pw"), timeout=TIMEOUT).status_code == 204
    assert broker.messages.bodies == [b"buffered", b"after"]


def test_pipelined_requests_on_a_raw_socket(broker: fakebroker.ThreadedBroker) -> None:
    with connect(broker.http_url) as sock:
        sock.sendall(b"".join(request("POST", f"/%2F/amq.topic/p.{n}", f"body={n}".encode(), FORM)
                              for n in range(10)) + request("GET", "/stats", auth=None))
        replies = read_replies(sock, 11)
    assert [r.status for r in replies] == [204] * 10 + [200]
    assert [m.routing_key for m in broker.peek("q")] == [f"p.{n}" for n in range(10)]


def test_a_request_sent_byte_by_byte(broker: fakebroker.ThreadedBroker) -> None:
    raw = request("POST", "/%2F/amq.topic/slow", b"body=slowly", FORM)
    with connect(broker.http_url) as sock:
        for i in range(len(raw)):
            sock.send(raw[i:i + 1])
        [reply] = read_replies(sock, 1)
    assert reply.status == 204
    assert broker.peek("q")[0].body == b"slowly"


def test_malformed_http_closes_only_that_connection(broker: fakebroker.ThreadedBroker) -> None:
    with connect(broker.http_url) as good, connect(broker.http_url) as bad:
        good.sendall(request("POST", "/%2F/amq.topic/a", b"body=1", FORM))
        assert read_replies(good, 1)[0].status == 204
        bad.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
        answer = read_until_closed(bad)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"Connection: close" in answer
        good.sendall(request("POST", "/%2F/amq.topic/b", b"body=2", FORM))
        assert read_replies(good, 1)[0].status == 204


def test_an_oversized_body_is_413_and_the_connection_closes(broker: fakebroker.ThreadedBroker) -> None:
    with connect(broker.http_url) as sock:
        sock.sendall(b"POST /%2F/amq.topic/k HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"larger than 4096 bytes" in answer
    assert broker.peek("q") == []


def test_chunked_publish_with_requests(broker: fakebroker.ThreadedBroker) -> None:
    def parts() -> Iterator[bytes]:
        yield b"body=chunk"
        yield b"ed&type=t"

    r = requests.post(f"{broker.http_url}/%2F/amq.topic/c", data=parts(), headers=FORM, auth=("guest", "guest"),
                      timeout=TIMEOUT)
    assert r.status_code == 204
    [m] = broker.peek("q")
    assert (m.body, m.properties) == (b"chunked", {"type": "t"})
