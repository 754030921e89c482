"""Web STOMP contract: STOMP over WebSocket at /ws, as RabbitMQ 3.10's web_stomp plugin serves it."""

from __future__ import annotations

import pytest
import websocket
from contractlib import Backend
from kit.stomp import frame_bytes

pytestmark = pytest.mark.rabbitmq


@pytest.mark.parametrize(("offered", "chosen"), [
    (["v12.stomp", "v11.stomp", "v10.stomp"], "v12.stomp"),
    (["v10.stomp", "v11.stomp"], "v11.stomp"),
    (["v10.stomp"], "v10.stomp"),
    (None, None),
])
def test_subprotocol_negotiation(backend: Backend, offered: list[str] | None, chosen: str | None) -> None:
    c = backend.web_stomp_client(offered)
    assert c.subprotocol == chosen
    # The STOMP version is still the one accept-version negotiates.
    assert c.connect("1.0,1.1,1.2").get("version") == "1.2"


def test_unknown_subprotocol_gets_no_protocol_header(backend: Backend) -> None:
    # RabbitMQ accepts the upgrade without a Sec-WebSocket-Protocol header, which websocket-client refuses.
    with pytest.raises(websocket.WebSocketException, match="Invalid WebSocket Header"):
        backend.web_stomp_client(["stomp"])


def test_connected_and_round_trip_in_text_frames(backend: Backend) -> None:
    c = backend.web_stomp_client(["v12.stomp"])
    frame = c.connect("1.2")
    assert [k for k, _ in frame.headers] == ["server", "session", "heart-beat", "version"]
    c.send("SUBSCRIBE", {"destination": "/topic/ws.test", "id": "ws-sub", "receipt": "s"})
    c.receipt("s")
    c.send("SEND", {"destination": "/topic/ws.test", "x-hdr": "1", "content-type": "text/plain"},
           "hello over websocket")
    message = c.recv_command("MESSAGE")
    assert message.headers[4:] == [("x-hdr", "1"), ("content-type", "text/plain"), ("content-length", "20")]
    assert message.body == b"hello over websocket"
    assert set(c.message_opcodes) == {websocket.ABNF.OPCODE_TEXT}
    assert bytes(c.raw).endswith(b"hello over websocket\x00\n")


def test_binary_frames_and_several_frames_per_message(backend: Backend) -> None:
    c = backend.web_stomp_client(["v12.stomp"], binary=True).connected()
    c.send_message(frame_bytes("SUBSCRIBE", {"destination": "/topic/ws.multi", "id": "m"})
                   + frame_bytes("SEND", {"destination": "/topic/ws.multi"}, "one")
                   + frame_bytes("SEND", {"destination": "/topic/ws.multi", "receipt": "r"}, "two"),
                   websocket.ABNF.OPCODE_BINARY)
    assert [f.body for f in c.frames(3)] == [b"one", b"two", b""]


def test_one_frame_split_across_messages(backend: Backend) -> None:
    c = backend.web_stomp_client(["v12.stomp"]).connected()
    data = frame_bytes("SEND", {"destination": "/topic/ws.split", "receipt": "split"}, "body")
    for part in (data[:5], data[5:20], data[20:]):
        c.send_message(part)
    c.receipt("split")


def test_disconnect_sends_no_receipt_but_a_close(backend: Backend) -> None:
    c = backend.web_stomp_client(["v12.stomp"]).connected()
    c.send("DISCONNECT", {"receipt": "bye-1"})
    assert c.expect_closed() == []
    assert c.close_frame == (1000, "STOMP died")


def test_amqp_error_closes_without_the_error_frame(backend: Backend) -> None:
    # The ERROR frame is queued behind the close and never sent: the client sees only the close.
    c = backend.web_stomp_client(["v12.stomp"]).connected()
    c.send("SUBSCRIBE", {"destination": "/amq/queue/missing-q", "id": "m"})
    assert c.expect_closed() == []
    assert c.close_frame == (1000, "STOMP died")


def test_validation_errors_arrive_and_the_connection_stays(backend: Backend) -> None:
    c = backend.web_stomp_client(["v12.stomp"]).connected()
    c.send("SEND", {"destination": "/foo/bar"})
    assert c.recv().get("message") == "Unknown destination"
    c.expect_open()


def test_frames_of_a_message_that_ends_the_connection_are_lost(backend: Backend) -> None:
    c = backend.web_stomp_client(["v12.stomp"]).connected()
    c.send_message(frame_bytes("SEND", {"destination": "/topic/x", "receipt": "r1"})
                   + frame_bytes("DISCONNECT", {"receipt": "bye"}))
    assert c.expect_closed() == []


def test_heart_beat_timeout_closes_with_stomp_died(backend: Backend) -> None:
    c = backend.web_stomp_client(["v12.stomp"]).connected(heart_beat="1000,0")
    backend.advance(3.5)
    assert c.expect_closed(timeout=2.0) == []
    assert c.close_frame == (1000, "STOMP died")


def test_server_heart_beats_every_second(backend: Backend) -> None:
    c = backend.web_stomp_client(["v12.stomp"]).connected(heart_beat="0,1000")
    before = c.received_bytes
    backend.advance(1.7)
    c.expect_nothing(0.2)
    # The first beat at 0.5 s, then one per second (RabbitMQ counts its own beat as traffic): 1.5 s.
    assert c.received_bytes - before == 2


def test_tcp_and_websocket_clients_share_the_broker(backend: Backend) -> None:
    ws = backend.web_stomp_client(["v12.stomp"]).connected()
    ws.send("SUBSCRIBE", {"destination": "/topic/shared", "id": "s", "receipt": "s"})
    ws.receipt("s")
    tcp = backend.stomp_client().connected()
    tcp.send("SEND", {"destination": "/topic/shared"}, "from tcp")
    assert ws.recv_command("MESSAGE").body == b"from tcp"


@pytest.mark.difference("web-stomp-sockjs-at-stomp")
def test_sockjs_endpoint(backend: Backend) -> None:
    import http.client
    from urllib.parse import urlparse

    url = urlparse(backend.web_stomp_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
    try:
        conn.request("GET", "/stomp/info")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if backend.is_fake:
        assert response.status == 200 and b'"websocket": true' in body
    else:
        assert response.status == 404  # RabbitMQ 3.7+ dropped SockJS


def test_permessage_deflate(backend: Backend) -> None:
    """A client that offers permessage-deflate (browsers do) gets it, and compressed frames both ways."""
    import socket
    from urllib.parse import urlparse

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage
    from wsproto.extensions import PerMessageDeflate

    url = urlparse(backend.web_stomp_url)
    ws = WSConnection(ConnectionType.CLIENT)
    raw = bytearray()
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(ws.send(Request(host="localhost", target="/ws", subprotocols=["v12.stomp"],
                                     extensions=[PerMessageDeflate()])))
        texts: list[str] = []
        while len(texts) < 2:
            data = sock.recv(65536)
            assert data, "closed"
            raw += data
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    assert [e.name for e in event.extensions] == ["permessage-deflate"]
                    sock.sendall(ws.send(TextMessage(data=f"CONNECT\naccept-version:1.2\nhost:{backend.vhost}\n\n\x00"
                                                     "SEND\ndestination:/topic/x\nreceipt:r\n\n\x00")))
                elif isinstance(event, TextMessage):
                    texts.append(event.data)
    head = bytes(raw).split(b"\r\n\r\n", 1)[0].lower()
    assert b"sec-websocket-extensions: permessage-deflate" in head
    assert texts[0].startswith("CONNECTED\n") and texts[1] == "RECEIPT\nreceipt-id:r\n\n\x00\n"


def test_websocket_pings_count_as_heart_beats(backend: Backend) -> None:
    # RabbitMQ's heart-beat monitor counts the socket's bytes: WebSocket pings keep a silent STOMP client alive.
    c = backend.web_stomp_client(["v12.stomp"]).connected(heart_beat="1000,0")
    for _ in range(5):
        backend.advance(0.9)
        c.ping()
    c.expect_open()
