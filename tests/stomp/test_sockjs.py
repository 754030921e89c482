"""Web STOMP through SockJS at /stomp over real sockets: /info, the xhr polling and xhr_streaming transports with
xhr_send, and the websocket transport; SockJS heart-beats and session expiry on the broker clock."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest
import websocket

from fakebroker import ThreadedBroker

TIMEOUT = 5.0
CONNECT = "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:1000,1000\n\n\x00"


def frames_of(line: bytes) -> list[str]:
    """The STOMP frames in one ``a[...]`` SockJS frame."""
    text = line.decode()
    assert text.startswith("a["), text
    return list(json.loads(text[1:]))


class Xhr:
    """A SockJS session over the xhr transports, one HTTP connection for polls and one for sends."""

    def __init__(self, broker: ThreadedBroker, session: str = "s1") -> None:
        url = urlparse(broker.sockjs_url)
        self.host, self.port = url.hostname or "", url.port or 0
        self.base = f"{url.path}/000/{session}"
        self.poller = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        self.sender = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)

    def poll(self) -> tuple[int, bytes]:
        self.poller.request("POST", f"{self.base}/xhr", headers={"Origin": "http://page.test"})
        response = self.poller.getresponse()
        assert response.getheader("Access-Control-Allow-Origin") == "http://page.test"
        return response.status, response.read()

    def send(self, *messages: str, raw: bytes | None = None) -> tuple[int, bytes]:
        body = raw if raw is not None else json.dumps(list(messages)).encode()
        self.sender.request("POST", f"{self.base}/xhr_send", body=body)
        response = self.sender.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.poller.close()
        self.sender.close()


@pytest.fixture
def xhr(fakebroker: ThreadedBroker) -> Iterator[Callable[..., Xhr]]:
    made: list[Xhr] = []

    def make(session: str = "s1") -> Xhr:
        client = Xhr(fakebroker, session)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_sockjs_url_and_info(fakebroker: ThreadedBroker) -> None:
    url = urlparse(fakebroker.sockjs_url)
    assert (url.scheme, url.path, url.port) == ("http", "/stomp", fakebroker.addresses["web_stomp"].port)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=TIMEOUT)
    conn.request("GET", "/stomp/info?t=1", headers={"Origin": "http://page.test"})
    response = conn.getresponse()
    info = json.loads(response.read())
    assert response.status == 200 and response.getheader("Content-Type") == "application/json; charset=UTF-8"
    assert (info["websocket"], info["cookie_needed"], info["origins"]) == (True, False, ["*:*"])
    assert isinstance(info["entropy"], int)
    assert response.getheader("Access-Control-Allow-Credentials") == "true"
    conn.request("OPTIONS", "/stomp/info", headers={"Access-Control-Request-Headers": "content-type"})
    response = conn.getresponse()
    response.read()
    assert response.status == 204
    assert response.getheader("Access-Control-Allow-Methods") == "OPTIONS, GET"
    assert response.getheader("Access-Control-Allow-Headers") == "content-type"
    conn.request("GET", "/stomp")
    assert conn.getresponse().read() == b"Welcome to SockJS!\n"
    conn.request("GET", "/stomp/nothing/here")
    assert conn.getresponse().status == 404


def test_xhr_polling_session(xhr: Callable[..., Xhr], fakebroker: ThreadedBroker) -> None:
    client = xhr()
    assert client.poll() == (200, b"o\n")
    assert client.send(CONNECT) == (204, b"")
    status, body = client.poll()
    [connected] = frames_of(body.rstrip(b"\n"))
    assert re.match(r"CONNECTED\nserver:RabbitMQ/3\.10\.8\nsession:session-\S+\nheart-beat:1000,1000\nversion:1\.2\n"
                    r"\n\x00\n$", connected)
    assert client.send("SUBSCRIBE\ndestination:/topic/sockjs.*\nid:s\nreceipt:r\n\n\x00",
                       "SEND\ndestination:/topic/sockjs.x\n\nhello sockjs\x00")[0] == 204
    frames: list[str] = []
    while len(frames) < 2:
        frames += frames_of(client.poll()[1].rstrip(b"\n"))
    assert frames[0] == "RECEIPT\nreceipt-id:r\n\n\x00\n"
    assert frames[1].startswith("MESSAGE\nsubscription:s\ndestination:/topic/sockjs.x\n")
    assert frames[1].endswith("content-length:12\n\nhello sockjs\x00\n")
    [info] = [c for c in fakebroker.clients if c.transport == "sockjs" and c.sockjs_session]
    assert (info.protocol, info.subscriptions, info.sockjs_session) == ("stomp", {"s": "/topic/sockjs.*"}, "s1")


def test_stomp_heart_beats_are_not_run_over_sockjs(xhr: Callable[..., Xhr], fakebroker: ThreadedBroker) -> None:
    client = xhr()
    client.poll()
    client.send(CONNECT)
    client.poll()
    fakebroker.clock.advance(4)  # STOMP would have dropped a silent client; SockJS expiry is 5 s without a poll
    assert client.send("SEND\ndestination:/topic/x\nreceipt:alive\n\n\x00")[0] == 204
    assert frames_of(client.poll()[1].rstrip(b"\n")) == ["RECEIPT\nreceipt-id:alive\n\n\x00\n"]


def test_xhr_send_errors(xhr: Callable[..., Xhr]) -> None:
    client = xhr()
    assert client.send(CONNECT) == (404, b"Not found")  # no session yet
    client.poll()
    assert client.send(raw=b"") == (500, b"Payload expected.")
    assert client.send(raw=b"[not json") == (500, b"Broken JSON encoding.")


def test_a_second_poll_is_refused_while_one_waits(xhr: Callable[..., Xhr], fakebroker: ThreadedBroker) -> None:
    client = xhr()
    client.poll()
    client.poller.request("POST", f"{client.base}/xhr")  # waits: nothing to say yet
    other = xhr()
    assert other.poll() == (200, b'c[2010,"Another connection still open"]\n')
    fakebroker.clock.advance(25)  # the waiting poll gets a heart-beat
    response = client.poller.getresponse()
    assert response.read() == b"h\n"


def test_session_expires_without_a_poll(xhr: Callable[..., Xhr], fakebroker: ThreadedBroker) -> None:
    client = xhr()
    client.poll()
    client.send(CONNECT)
    client.poll()
    client.send("SUBSCRIBE\ndestination:/topic/gone\nid:g\nreceipt:r\n\n\x00")
    client.poll()
    assert any(q.startswith("stomp-subscription-") for q in fakebroker.queues)
    fakebroker.clock.advance(5)
    assert not any(q.startswith("stomp-subscription-") for q in fakebroker.queues)
    assert client.send("SEND\ndestination:/topic/x\n\n\x00") == (404, b"Not found")


def test_disconnect_sends_the_receipt_then_closes(xhr: Callable[..., Xhr]) -> None:
    client = xhr()
    client.poll()
    client.send(CONNECT)
    client.poll()
    client.send("DISCONNECT\nreceipt:bye\n\n\x00")
    assert frames_of(client.poll()[1].rstrip(b"\n")) == ["RECEIPT\nreceipt-id:bye\n\n\x00\n"]
    assert client.poll() == (200, b'c[1000,"STOMP died"]\n')


def test_xhr_streaming(fakebroker: ThreadedBroker, xhr: Callable[..., Xhr]) -> None:
    client = xhr("stream")
    conn = http.client.HTTPConnection(client.host, client.port, timeout=TIMEOUT)
    conn.request("POST", f"{client.base}/xhr_streaming")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
    assert response.readline() == b"h" * 2048 + b"\n"
    assert response.readline() == b"o\n"
    client.send(CONNECT)
    assert frames_of(response.readline().rstrip(b"\n"))[0].startswith("CONNECTED\n")
    client.send("SUBSCRIBE\ndestination:/topic/big\nid:b\n\n\x00")
    body = "x" * 70_000
    for _ in range(2):
        client.send(f"SEND\ndestination:/topic/big\n\n{body}\x00")
    got = [frames_of(response.readline().rstrip(b"\n"))[0] for _ in range(2)]
    assert all(frame.endswith(body + "\x00\n") for frame in got)
    # 128 KiB sent: the response ends, and the client opens another one on the same session.
    assert response.read() == b""
    conn.request("POST", f"{client.base}/xhr_streaming")
    again = conn.getresponse()
    assert again.readline() == b"h" * 2048 + b"\n"
    fakebroker.clock.advance(25)
    assert again.readline() == b"h\n"
    conn.close()


def test_websocket_transport(fakebroker: ThreadedBroker) -> None:
    url = urlparse(fakebroker.sockjs_url)
    ws = websocket.create_connection(f"ws://{url.hostname}:{url.port}/stomp/123/abcdef/websocket", timeout=TIMEOUT)
    try:
        assert ws.recv() == "o"
        ws.send(json.dumps([CONNECT]))
        assert json.loads(ws.recv()[1:])[0].startswith("CONNECTED\n")
        ws.send(json.dumps(["SUBSCRIBE\ndestination:/topic/ws.sockjs\nid:w\nreceipt:s\n\n\x00"]))
        assert json.loads(ws.recv()[1:]) == ["RECEIPT\nreceipt-id:s\n\n\x00\n"]  # subscribed before the publish
        fakebroker.publish("amq.topic", "ws.sockjs", b"over sockjs")
        message = json.loads(ws.recv()[1:])[0]
        assert message.endswith("\n\nover sockjs\x00\n")
        fakebroker.clock.advance(25)
        assert ws.recv() == "h"
        ws.send(json.dumps(["DISCONNECT\nreceipt:bye\n\n\x00"]))
        assert json.loads(ws.recv()[1:]) == ["RECEIPT\nreceipt-id:bye\n\n\x00\n"]
        assert ws.recv() == 'c[1000,"STOMP died"]'
    finally:
        ws.close()


def test_raw_web_stomp_still_at_ws(fakebroker: ThreadedBroker) -> None:
    ws = websocket.create_connection(fakebroker.web_stomp_url, timeout=TIMEOUT, subprotocols=["v12.stomp"])
    try:
        ws.send(CONNECT)
        assert ws.recv().startswith("CONNECTED\n")
    finally:
        ws.close()




def test_restart_ends_sockjs_sessions(xhr: Callable[..., Xhr], fakebroker: ThreadedBroker) -> None:
    client = xhr()
    client.poll()
    client.send(CONNECT)
    client.poll()
    client.send("SUBSCRIBE\ndestination:/queue/kept\nid:k\nreceipt:r\n\n\x00")
    client.poll()
    fakebroker.restart()
    # The session ended with the node's connections (the old HTTP connections are gone: new ones).
    assert xhr("s1").send("SEND\ndestination:/topic/x\n\n\x00") == (404, b"Not found")
    fresh = xhr("s2")
    assert fresh.poll() == (200, b"o\n")  # the endpoint works after the restart


@pytest.mark.fakebroker(stomp_ws_frame="binary")
def test_ws_frame_binary_setting(fakebroker: ThreadedBroker) -> None:
    ws = websocket.create_connection(fakebroker.web_stomp_url, timeout=TIMEOUT, subprotocols=["v12.stomp"])
    try:
        ws.send(CONNECT)
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_BINARY and data.startswith(b"CONNECTED\n")
    finally:
        ws.close()
