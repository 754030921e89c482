"""STOMP contract: malformed frames end the connection that sent them, as RabbitMQ 3.10's parser does (TCP: a
silent close; Web STOMP: a close frame naming the error), while a bystander on another connection keeps
working."""

from __future__ import annotations

import pytest
from contractlib import Backend

pytestmark = pytest.mark.rabbitmq

MALFORMED = {
    "header without colon": (b"SEND\ndestination /queue/x\n\nbody\x00", 1007,
                             '{header_no_value,"destination /queue/x"}'),
    "bad escape": (b"SEND\ndestination:/topic/x\nfoo:a\\tb\n\nbody\x00", 1007, '{bad_escape,"\\\\t"}'),
    "unknown escape": (b"SEND\nfoo:a\\xb\n\n\x00", 1007, '{bad_escape,"\\\\x"}'),
    "CR without LF": (b"SEND\rdestination:/topic/x\n\nabc\x00", 1007, '{unexpected_chars_in_command,"\\rd"}'),
    "CR in a header": (b"SEND\ndest\rination:/topic/x\n\nabc\x00", 1007, '{unexpected_chars_in_header,"\\ri"}'),
    "content-length too short": (b"SEND\ndestination:/topic/x\ncontent-length:3\n\nabcdef\x00", 1011, ""),
    "content-length not a number": (b"SEND\ndestination:/topic/x\ncontent-length:abc\n\nabc\x00", 1011, ""),
    "negative content-length": (b"SEND\ndestination:/topic/x\ncontent-length:-1\n\nabc\x00", 1011, ""),
}


@pytest.mark.parametrize("case", MALFORMED.keys())
def test_malformed_frame_over_tcp(backend: Backend, case: str) -> None:
    data = MALFORMED[case][0]
    bystander = backend.stomp_client().connected()
    bystander.send("SUBSCRIBE", {"destination": "/topic/malformed.watch", "id": "w", "receipt": "s"})
    bystander.receipt("s")
    c = backend.stomp_client().connected()
    c.send_raw(data)
    assert c.expect_closed() == []  # no ERROR frame: RabbitMQ logs the parse error and closes the socket
    bystander.expect_open()
    bystander.send("SEND", {"destination": "/topic/malformed.watch"}, "still here")
    assert bystander.recv_command("MESSAGE").body == b"still here"


@pytest.mark.parametrize("case", MALFORMED.keys())
def test_malformed_frame_over_websocket(backend: Backend, case: str) -> None:
    data, code, reason = MALFORMED[case]
    bystander = backend.web_stomp_client().connected()
    c = backend.web_stomp_client().connected()
    c.send_raw(data)
    assert c.expect_closed() == []
    assert c.close_frame == (code, reason)
    bystander.expect_open()


def test_garbage_before_connect(backend: Backend) -> None:
    c = backend.stomp_client()
    c.send_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n\x00")  # a TLS hello, roughly
    # Any bytes up to a newline are a command: this one is not CONNECT, so the client must log in first.
    frame = c.recv()
    assert (frame.command, frame.get("message")) == ("ERROR", "Illegal command")
    assert c.connect("1.2").command == "CONNECTED"


def test_heart_beat_noise_between_frames_is_fine(backend: Backend) -> None:
    c = backend.stomp_client()
    c.send_raw(b"\n\r\n\x00\n")
    frame = c.connect("1.2")
    assert frame.command == "CONNECTED"
    c.send_raw(b"\n\n\r\n")
    c.expect_open()
