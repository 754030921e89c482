"""STOMP contract: CONNECT and CONNECTED, versions, heart-beat negotiation, authentication, frames out of place."""

from __future__ import annotations

import re

import pytest
from contractlib import Backend
from kit.stomp import as_tuple, error_frame, frame_bytes

pytestmark = pytest.mark.rabbitmq
SESSION = r"session-[A-Za-z0-9_-]{22}"


def test_connected_frame(backend: Backend) -> None:
    c = backend.stomp_client()
    frame = c.connect("1.2")
    assert [k for k, _ in frame.headers] == ["server", "session", "heart-beat", "version"]
    assert frame.get("server") == "RabbitMQ/3.10.8"
    assert re.fullmatch(SESSION, frame.get("session") or "")
    assert (frame.get("heart-beat"), frame.get("version")) == ("0,0", "1.2")
    # Every server frame ends with NUL and a newline (trailing_lf).
    assert bytes(c.raw).endswith(b"\n\n\x00\n")


@pytest.mark.parametrize(("offered", "version"), [("1.0,1.1,1.2", "1.2"), ("1.1", "1.1"), ("1.0", "1.0"),
                                                  (None, "1.0"), ("2.0,1.1", "1.1")])
def test_version_negotiation(backend: Backend, offered: str | None, version: str) -> None:
    assert backend.stomp_client().connect(offered).get("version") == version


def test_stomp_command_is_connect(backend: Backend) -> None:
    assert backend.stomp_client().connect("1.2", command="STOMP").command == "CONNECTED"


def test_version_mismatch(backend: Backend) -> None:
    c = backend.stomp_client()
    assert as_tuple(c.connect("2.0")) == error_frame("Version mismatch", "Supported versions are 1.0,1.1,1.2\n")
    # Still open, and a CONNECT with a good version works.
    assert c.connect("1.2").command == "CONNECTED"


@pytest.mark.parametrize(("client", "server"), [("1000,1000", "1000,1000"), ("0,5000", "5000,0"),
                                                ("5000,0", "0,5000"), ("100,100", "1000,1000"),
                                                ("1000,2500", "2000,1000")])
def test_heart_beat_negotiation(backend: Backend, client: str, server: str) -> None:
    assert backend.stomp_client().connect("1.2", heart_beat=client).get("heart-beat") == server


@pytest.mark.parametrize(("fields", "body"), [
    ({"passcode": "wrong"}, "Access refused for user 'guest'\n"),
    ({"login": "nobody", "passcode": "x"}, "Access refused for user 'nobody'\n"),
])
def test_bad_credentials(backend: Backend, fields: dict[str, str], body: str) -> None:
    c = backend.stomp_client()
    assert as_tuple(c.connect("1.2", **fields)) == error_frame("Bad CONNECT", body)  # type: ignore[arg-type]


def test_unknown_vhost(backend: Backend) -> None:
    c = backend.stomp_client()
    answer = c.connect("1.2", host=f"{backend.vhost}-nosuch")
    assert as_tuple(answer) == error_frame("Bad CONNECT", f"Virtual host '{backend.vhost}-nosuch' access denied")


def test_no_login_means_the_default_user(backend: Backend) -> None:
    assert backend.stomp_client().connect("1.2", login=None, passcode=None).command == "CONNECTED"


def test_frame_before_connect(backend: Backend) -> None:
    c = backend.stomp_client()
    c.send("SEND", {"destination": "/topic/x"})
    assert as_tuple(c.recv()) == error_frame("Illegal command", "You must log in using CONNECT first")
    assert c.connect("1.2").command == "CONNECTED"


def test_second_connect_closes_silently(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("CONNECT", {"accept-version": "1.2", "host": backend.vhost})
    assert c.expect_closed() == []


def test_unknown_command(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send_raw(frame_bytes("FOO", {"receipt": "r"}))
    assert as_tuple(c.recv()) == error_frame("Bad command", 'Could not interpret command "FOO"\n')
    c.expect_open()


def test_disconnect_with_receipt(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("DISCONNECT", {"receipt": "bye-1"})
    assert [as_tuple(f) for f in c.expect_closed()] == [("RECEIPT", [("receipt-id", "bye-1")], b"")]
    assert bytes(c.raw).endswith(b"RECEIPT\nreceipt-id:bye-1\n\n\x00\n")


def test_silent_client_is_dropped_after_three_intervals(backend: Backend) -> None:
    c = backend.stomp_client().connected(heart_beat="1000,0")
    backend.advance(2.5)
    c.expect_open()  # the SEND just now counts as traffic: the countdown starts again
    backend.advance(3.5)
    assert c.expect_closed(timeout=2.0) == []


def test_server_heart_beats(backend: Backend) -> None:
    c = backend.stomp_client().connected(heart_beat="0,1000")
    before = c.received_bytes
    backend.advance(1.2)
    c.expect_nothing(0.2 if backend.is_fake else 0.3)
    # Beats every half second on TCP (two or three EOLs in ~1.4 s, as the first comes at 0.5 s).
    assert c.received_bytes - before in (2, 3)
