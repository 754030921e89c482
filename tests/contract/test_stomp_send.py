"""STOMP contract: SEND destinations, their errors, and the header <-> AMQP property mapping both ways."""

from __future__ import annotations

import re

import pytest
from contractlib import Backend
from kit.stomp import as_tuple, error_frame

pytestmark = pytest.mark.rabbitmq
SESSION = r"session-[A-Za-z0-9_-]{22}"


def test_send_to_queue_declares_a_durable_queue(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/queue/stomp-messages", "receipt": "r"}, "hello")
    c.receipt("r")
    q = backend.queue("stomp-messages")
    assert q is not None and q.flags == (True, False, False) and q.arguments == {}
    got = backend.get_wait("stomp-messages")
    assert (got.exchange, got.routing_key, got.body) == ("", "stomp-messages", b"hello")


def test_send_to_an_inequivalent_queue_closes(backend: Backend) -> None:
    backend.declare_queue("rpc-requests")
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/queue/rpc-requests"}, "x")
    assert [as_tuple(f) for f in c.expect_closed()] == [error_frame(
        "precondition_failed", f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'rpc-requests' in vhost "
        f"'{backend.vhost}': received 'true' but current is 'false'")]


def test_send_to_missing_amq_queue_is_dropped(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/amq/queue/custom-queue", "receipt": "r"}, "x")
    c.receipt("r")
    assert backend.queue("custom-queue") is None


def test_send_to_missing_exchange_closes(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/exchange/stomp-routing/example"}, "x")
    assert [as_tuple(f) for f in c.expect_closed()] == [
        error_frame("not_found", f"NOT_FOUND - no exchange 'stomp-routing' in vhost '{backend.vhost}'")]


@pytest.mark.parametrize(("destination", "exchange", "key"), [
    ("/exchange/stomp-routing/example", "stomp-routing", "example"),
    ("/exchange/stomp-routing", "stomp-routing", ""),
    ("/topic/routing.key", "amq.topic", "routing.key"),
    ("/topic/a%2Fb", "amq.topic", "a/b"),
])
def test_send_routing(backend: Backend, destination: str, exchange: str, key: str) -> None:
    if exchange == "stomp-routing":
        backend.declare_exchange("stomp-routing", "fanout")
    tap = backend.tap("#" if exchange == "amq.topic" else "", exchange)
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": destination}, "x")
    got = backend.get_wait(tap)
    assert (got.exchange, got.routing_key) == (exchange, key)


@pytest.mark.parametrize(("destination", "message", "body"), [
    ("/queue/", "Invalid destination", "'/' is not a valid queue destination\n"),
    ("/queue", "Invalid destination", "'' is not a valid queue destination\n"),
    ("/amq/queue/", "Invalid destination", "'/' is not a valid amqqueue destination\n"),
    ("/topic/a/b", "Invalid destination", "'/a/b' is not a valid topic destination\n"),
    ("/temp-queue/tq1", "Invalid destination", "'/temp-queue/tq1' is not a valid destination for 'SEND'\n"),
    ("", "Invalid destination", "Destination cannot be blank"),
    ("/foo/bar", "Unknown destination", "'/foo/bar' is not a valid destination.\nValid destination types are: "
                                        "/temp-queue, /exchange, /topic, /queue, /amq/queue, /reply-queue/.\n"),
    (None, "Missing destination", "\"SEND\" must include a 'destination' header\n"),
])
def test_destination_errors_keep_the_connection(backend: Backend, destination: str | None, message: str,
                                                body: str) -> None:
    c = backend.stomp_client().connected()
    headers = {"receipt": "r"} if destination is None else {"destination": destination, "receipt": "r"}
    c.send("SEND", headers, "x")
    assert as_tuple(c.recv()) == error_frame(message, body)
    c.expect_open()


@pytest.mark.parametrize(("headers", "message", "body"), [
    ({"message-id": "m1"}, "Invalid header", "'message-id' is not allowed on 'SEND'.\n"),
    ({"priority": "high"}, "Processing error", "Processing error"),
    ({"transaction": "nope"}, "Bad transaction", 'Invalid transaction identifier: "nope"\n'),
])
def test_header_errors_keep_the_connection(backend: Backend, headers: dict[str, str], message: str,
                                           body: str) -> None:
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/topic/x", **headers}, "x")
    assert as_tuple(c.recv()) == error_frame(message, body)
    c.expect_open()


def test_user_id_must_be_the_login(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/topic/x", "user-id": "mallory"}, "x")
    assert [as_tuple(f) for f in c.expect_closed()] == [error_frame(
        "precondition_failed", "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was "
        "'guest'")]


def test_send_headers_become_amqp_properties(backend: Backend) -> None:
    backend.declare_queue("hdr-probe-amqp")
    c = backend.stomp_client().connected()
    c.send("SEND", [
        ("destination", "/amq/queue/hdr-probe-amqp"), ("app-id", "rabbitmq-in-depth"), ("priority", "5"),
        ("reply-to", "/queue/replies"), ("timestamp", "1400000000"), ("X-Custom-Header", "custom-value"),
        ("x-lower", "lower"), ("content-type", "application/json"), ("content-encoding", "gzip"),
        ("correlation-id", "corr-1"), ("expiration", "60000"), ("amqp-message-id", "amqp-msg-1"),
        ("type", "my-type"), ("user-id", "guest"), ("persistent", "true"), ("receipt", "rcpt-1"),
    ], '{"hello": "world"}')
    c.receipt("rcpt-1")
    got = backend.get_wait("hdr-probe-amqp")
    assert got.properties == {
        "content_type": "application/json", "content_encoding": "gzip", "delivery_mode": 2, "priority": 5,
        "correlation_id": "corr-1", "reply_to": "/queue/replies", "expiration": "60000",
        "message_id": "amqp-msg-1", "timestamp": 1400000000, "type": "my-type", "user_id": "guest",
        "app_id": "rabbitmq-in-depth",
        "headers": {"receipt": "rcpt-1", "x-lower": "lower", "X-Custom-Header": "custom-value"},
    }


def test_content_length_and_transaction_headers_are_copied(backend: Backend) -> None:
    backend.declare_queue("copied")
    c = backend.stomp_client().connected()
    c.send("BEGIN", {"transaction": "t1"})
    c.send_raw(b"SEND\ndestination:/amq/queue/copied\ncontent-length:3\ntransaction:t1\n\nabc\x00")
    c.send("COMMIT", {"transaction": "t1", "receipt": "c"})
    c.receipt("c")
    got = backend.get_wait("copied")
    assert got.headers == {"content-length": "3", "transaction": "t1"}


@pytest.mark.parametrize(("value", "mode"), [("true", 2), ("True", 2), ("false", None), ("1", None)])
def test_persistent_header(backend: Backend, value: str, mode: int | None) -> None:
    backend.declare_queue("pers")
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/amq/queue/pers", "persistent": value}, "x")
    assert backend.get_wait("pers").properties.get("delivery_mode") == mode


def test_amqp_properties_become_message_headers(backend: Backend) -> None:
    backend.declare_queue("hdr-out")
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/amq/queue/hdr-out", "id": "sub-0", "ack": "client", "receipt": "s"})
    c.receipt("s")
    backend.publish("", "hdr-out", b"0123456789abcdefgh", {
        "content_type": "application/json", "content_encoding": "gzip", "delivery_mode": 2, "priority": 5,
        "correlation_id": "corr-1", "reply_to": "some-queue", "expiration": "60000", "message_id": "m-1",
        "timestamp": 1400000000, "type": "my-type", "user_id": "guest", "app_id": "app",
        # The management API's publish sorts the table by name; AMQP clients keep their order.
        "headers": {"h-bool": True, "h-int": 42, "h-list": [1, 2], "h-str": "v"},
    })
    frame = c.recv_command("MESSAGE")
    message_id = frame.get("message-id") or ""
    assert re.fullmatch(r"T_sub-0@@" + SESSION + r"@@1", message_id)
    assert frame.headers == [
        ("subscription", "sub-0"), ("destination", "/queue/hdr-out"), ("message-id", message_id),
        ("redelivered", "false"), ("ack", message_id), ("h-int", "42"), ("h-str", "v"), ("app-id", "app"),
        ("user-id", "guest"), ("type", "my-type"), ("timestamp", "1400000000"), ("amqp-message-id", "m-1"),
        ("expiration", "60000"), ("reply-to", "/reply-queue/some-queue"), ("correlation-id", "corr-1"),
        ("priority", "5"), ("persistent", "true"), ("content-encoding", "gzip"),
        ("content-type", "application/json"), ("content-length", "18"),
    ]
    assert frame.body == b"0123456789abcdefgh"


def test_message_quirks(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/topic/q.#", "id": "s", "receipt": "s"})
    c.receipt("s")
    backend.publish("amq.topic", "q.one", b"", {"delivery_mode": 1, "reply_to": "/queue/r"})
    frame = c.recv_command("MESSAGE")
    # delivery_mode 1 is persistent:1; an empty body has no content-length; a destination reply-to is kept.
    assert frame.headers[4:] == [("reply-to", "/queue/r"), ("persistent", "1")]


@pytest.mark.parametrize(("exchange", "key", "destination"), [
    ("amq.topic", "a.b", "/topic/a.b"), ("amq.fanout", "", "/exchange/amq.fanout"),
    ("amq.direct", "k/x", "/exchange/amq.direct/k%2Fx"),
])
def test_message_destination_is_rebuilt(backend: Backend, exchange: str, key: str, destination: str) -> None:
    backend.declare_queue("dest-tap")
    backend.bind("dest-tap", exchange, key)
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/amq/queue/dest-tap", "id": "t", "receipt": "s"})
    c.receipt("s")
    backend.publish(exchange, key, b"x")
    assert c.recv_command("MESSAGE").get("destination") == destination


def test_escaping_repeats_crlf_and_nul_bodies(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/topic/esc", "id": "e", "receipt": "s"})
    c.receipt("s")
    c.send_raw(b"SEND\r\ndestination:/topic/esc\r\nh:a\\cb\\nc\\\\d\r\nx-rep:first\r\nx-rep:second\r\n"
               b"content-length:5\r\n\r\na\x00b\x00c\x00")
    frame = c.recv_command("MESSAGE")
    assert (frame.get("h"), frame.get("x-rep"), frame.body) == ("a:b\nc\\d", "first", b"a\x00b\x00c")
    assert b"\nh:a\\cb\\nc\\\\d\n" in bytes(c.raw)


def test_receipt_header_is_copied_and_the_message_may_come_first(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/topic/rc", "id": "r", "receipt": "s"})
    c.receipt("s")
    c.send("SEND", {"destination": "/topic/rc", "receipt": "crlf"}, "z")
    assert c.recv_command("MESSAGE").get("receipt") == "crlf"
    c.receipt("crlf")
