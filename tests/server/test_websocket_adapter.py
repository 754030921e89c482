"""WebSocketSession driven sans-I/O: wsproto's client side produces the bytes and parses the answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol

from fakebroker.protocols.base import ConnectionInfo, Session
from fakebroker.protocols.websocket import WebSocketSession

INFO = ConnectionInfo(peer=("127.0.0.1", 50000), local=("127.0.0.1", 15674))
STOMP_PROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")


class Echo(Session):
    """Echoes every chunk; ``b"bye"`` asks to close."""

    protocol = "echo"

    def __init__(self, info: ConnectionInfo) -> None:
        super().__init__(info)
        self.received: list[bytes] = []
        self.lost = False
        self.client_id = "echo-1"

    def _on_data(self, data: bytes) -> None:
        self.received.append(data)
        if data == b"bye":
            self.request_close()
        else:
            self.send(data)

    def _on_connection_lost(self) -> None:
        self.lost = True

    def describe(self) -> dict[str, Any]:
        return {"echo": True}


class Pair:
    """A server adapter and a wsproto client, with the bytes moved between them by hand."""

    def __init__(self, **options: Any) -> None:
        self.inners: list[Echo] = []
        self.wakeups = 0
        self.server = WebSocketSession(INFO, self._make_inner, **options)
        self.server.wakeup = self._wake
        self.client = WSConnection(ConnectionType.CLIENT)

    def _make_inner(self, info: ConnectionInfo) -> Session:
        self.inners.append(Echo(info))
        return self.inners[-1]

    def _wake(self) -> None:
        self.wakeups += 1

    @property
    def inner(self) -> Echo:
        assert len(self.inners) == 1
        return self.inners[0]

    def push(self, *events: Event) -> list[Event]:
        """Client sends ``events`` in one TCP chunk; returns what the client receives back."""
        self.server.receive_data(b"".join(self.client.send(e) for e in events))
        return self.pull()

    def pull(self) -> list[Event]:
        self.client.receive_data(self.server.data_to_send())
        return list(self.client.events())

    def open(self, subprotocols: Sequence[str] = (), target: str = "/ws") -> list[Event]:
        return self.push(Request(host="localhost", target=target, subprotocols=list(subprotocols)))


def opened(**options: Any) -> Pair:
    pair = Pair(**options)
    (accept,) = pair.open()
    assert isinstance(accept, AcceptConnection)
    return pair


def payloads(events: list[Event]) -> list[bytes]:
    out = []
    for event in events:
        assert isinstance(event, Message)
        out.append(event.data.encode() if isinstance(event, TextMessage) else bytes(event.data))
    return out


# -- handshake ---------------------------------------------------------------------------------------


def test_picks_highest_stomp_subprotocol_and_builds_inner_info() -> None:
    pair = Pair(subprotocols=STOMP_PROTOCOLS, frame_type="text")
    (accept,) = pair.push(
        Request(
            host="localhost",
            target="/ws?x=1",
            subprotocols=["v10.stomp", "v11.stomp", "v12.stomp"],
            extra_headers=[(b"Authorization", b"Basic Z3Vlc3Q6"), (b"X-Multi", b"a"), (b"x-multi", b"b")],
        )
    )
    assert isinstance(accept, AcceptConnection)
    assert accept.subprotocol == "v12.stomp"
    info = pair.inner.info
    assert info.transport == "websocket" and info.peer == INFO.peer
    assert info.headers["authorization"] == "Basic Z3Vlc3Q6"
    assert info.headers["host"] == "localhost"
    assert info.headers["sec-websocket-protocol"] == "v10.stomp, v11.stomp, v12.stomp"
    assert info.headers["x-multi"] == "a, b"
    assert INFO.transport == "tcp"  # the runtime's info is not modified
    assert pair.server.protocol == "echo"
    assert pair.server.client_id == "echo-1"
    assert pair.server.describe() == {"echo": True, "transport": "websocket", "subprotocol": "v12.stomp"}


@pytest.mark.parametrize("offered", [["v11.stomp"], ["v10.stomp", "v11.stomp"], ["stomp", "v11.stomp"]])
def test_picks_best_offered_stomp_subprotocol(offered: list[str]) -> None:
    (accept,) = Pair(subprotocols=STOMP_PROTOCOLS).open(offered)
    assert isinstance(accept, AcceptConnection) and accept.subprotocol == "v11.stomp"


@pytest.mark.parametrize("offered", [[], ["stomp"], ["mqtt"]])
def test_no_known_subprotocol_accepts_without_header(offered: list[str]) -> None:
    pair = Pair(subprotocols=STOMP_PROTOCOLS)
    pair.server.receive_data(pair.client.send(Request(host="h", target="/ws", subprotocols=offered)))
    response = pair.server.data_to_send()
    assert response.startswith(b"HTTP/1.1 101 ")
    assert b"sec-websocket-protocol" not in response.lower()
    assert pair.server.subprotocol is None and len(pair.inners) == 1


def test_mqtt_subprotocol() -> None:
    (accept,) = Pair(subprotocols=["mqtt"]).open(["mqttv3.1", "mqtt"])
    assert isinstance(accept, AcceptConnection) and accept.subprotocol == "mqtt"


def test_required_subprotocol_missing_is_400() -> None:
    pair = Pair(subprotocols=["mqtt"], require_subprotocol=True)
    reject, *body = pair.open(["stomp"])
    assert isinstance(reject, RejectConnection) and reject.status_code == 400
    assert pair.server.close_requested and pair.inners == []


def test_wrong_path_is_404() -> None:
    pair = Pair()
    reject, *body = pair.open(target="/stomp/websocket")
    assert isinstance(reject, RejectConnection) and reject.status_code == 404
    assert b"".join(e.data for e in body if isinstance(e, RejectData)) == b"404 Not Found\n"
    assert pair.server.close_requested and pair.inners == []


def test_plain_get_is_426() -> None:
    server = WebSocketSession(INFO, Echo)
    server.receive_data(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n")
    out = server.data_to_send()
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"connection: close" in head and f"content-length: {len(body)}".encode() in head
    assert server.close_requested and server.inner is None


def test_plain_get_on_other_path_is_404_and_garbage_is_400() -> None:
    server = WebSocketSession(INFO, Echo)
    server.receive_data(b"GET /stomp/info HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert server.data_to_send().startswith(b"HTTP/1.1 404 Not Found\r\n")
    server = WebSocketSession(INFO, Echo)
    server.receive_data(b"\x10\x0c\x00\x04MQTT\x04\x02\x00<\r\n\r\n")
    assert server.data_to_send().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert server.close_requested


def test_request_split_across_reads_and_frames_pipelined_behind_it() -> None:
    pair = Pair()
    raw = pair.client.send(Request(host="localhost", target="/ws"))
    pair.server.receive_data(raw[:10])
    assert pair.server.data_to_send() == b"" and pair.inners == []
    early = FrameProtocol(client=True, extensions=[]).send_data(b"early", True)  # before the 101 arrived
    pair.server.receive_data(raw[10:] + early)
    assert pair.inner.received == [b"early"]
    accept, echoed = pair.pull()
    assert isinstance(accept, AcceptConnection) and payloads([echoed]) == [b"early"]


# -- data path -----------------------------------------------------------------------------------------


def test_text_and_binary_client_messages_reach_inner_and_echo_as_binary() -> None:
    pair = opened()
    events = pair.push(TextMessage(data="héllo"), BytesMessage(data=b"\x00\xff"))
    assert pair.inner.received == ["héllo".encode(), b"\x00\xff"]
    assert all(isinstance(e, BytesMessage) for e in events)
    assert payloads(events) == ["héllo".encode(), b"\x00\xff"]


def test_text_frame_type_sends_text_and_falls_back_to_binary() -> None:
    pair = opened(frame_type="text")
    (text,) = pair.push(BytesMessage(data=b"CONNECTED\n\n\x00\n"))
    assert isinstance(text, TextMessage) and text.data == "CONNECTED\n\n\x00\n"
    (binary,) = pair.push(BytesMessage(data=b"\xff\xfe"))
    assert isinstance(binary, BytesMessage) and binary.data == b"\xff\xfe"


def test_fragmented_message_is_fed_fragment_by_fragment() -> None:
    pair = opened()
    pair.push(
        BytesMessage(data=b"ab", message_finished=False),
        BytesMessage(data=b"", message_finished=False),
        BytesMessage(data=b"cd", message_finished=True),
    )
    assert pair.inner.received == [b"ab", b"cd"]
    assert not pair.inner.lost


def test_empty_message_is_not_mistaken_for_eof() -> None:
    pair = opened()
    assert pair.push(BytesMessage(data=b"")) == []
    assert pair.inner.received == [] and not pair.inner.lost


def test_each_inner_send_is_one_message() -> None:
    pair = opened()
    pair.inner.send(b"one")
    pair.inner.send(b"two")
    events = pair.pull()
    assert payloads(events) == [b"one", b"two"]


def test_asynchronous_inner_output_wakes_the_runtime() -> None:
    pair = opened()
    before = pair.wakeups
    pair.inner.send(b"routed from elsewhere")  # e.g. a message published by another client
    assert pair.wakeups == before + 1
    assert pair.server._out  # visible to Runtime.flush(), which watches the session's buffer
    assert payloads(pair.pull()) == [b"routed from elsewhere"]


def test_runtime_hooks_set_after_construction_are_forwarded() -> None:
    pair = opened()
    aborted: list[str] = []
    pair.server.wakeup = lambda: aborted.append("wake")
    pair.server.abort_transport = lambda: aborted.append("abort")
    pair.inner.abort_transport()
    pair.inner.send(b"x")
    assert aborted == ["abort", "wake"]


# -- closing -------------------------------------------------------------------------------------------


def test_inner_close_sends_output_then_close_frame_with_reason() -> None:
    pair = opened(close_reason_on_inner_close="STOMP died")
    events = pair.push(BytesMessage(data=b"last"), BytesMessage(data=b"bye"), BytesMessage(data=b"ignored"))
    assert pair.server.close_requested
    *messages, close = events
    assert payloads(messages) == [b"last"]
    assert isinstance(close, CloseConnection) and (close.code, close.reason) == (1000, "STOMP died")
    assert pair.inner.received == [b"last", b"bye"]
    assert pair.server.data_to_send() == b""


def test_inner_close_without_reason() -> None:
    pair = opened()
    pair.inner.request_close()
    (close,) = pair.pull()
    assert isinstance(close, CloseConnection) and close.code == 1000 and not close.reason


def test_client_close_is_answered_and_ends_inner_abruptly() -> None:
    pair = opened()
    events = pair.push(BytesMessage(data=b"hi"), CloseConnection(code=1000, reason="done"))
    *messages, close = events
    assert payloads(messages) == [b"hi"]
    assert isinstance(close, CloseConnection) and close.code == 1000
    assert pair.inner.lost and pair.server.close_requested


def test_protocol_error_closes_with_1002_and_loses_inner() -> None:
    pair = opened()
    pair.server.receive_data(b"\x81\x05hello")  # unmasked client frame
    close = pair.pull()[-1]
    assert isinstance(close, CloseConnection) and close.code == 1002
    assert pair.inner.lost and pair.server.close_requested


def test_ping_gets_pong() -> None:
    pair = opened()
    (pong,) = pair.push(Ping(payload=b"beat"))
    assert isinstance(pong, Pong) and pong.payload == b"beat"
    assert pair.inner.received == []


def test_peer_eof_loses_inner() -> None:
    pair = opened()
    pair.server.receive_data(b"")
    assert pair.server.closed and pair.inner.lost


def test_runtime_abort_loses_inner() -> None:
    pair = opened()
    pair.server.connection_lost()
    assert pair.inner.lost
    assert pair.server.data_to_send() == b""


def test_eof_during_handshake_creates_nothing() -> None:
    server = WebSocketSession(INFO, Echo)
    server.receive_data(b"GET /ws HTTP/1.1\r\n")
    server.receive_data(b"")
    assert server.closed and server.inner is None
