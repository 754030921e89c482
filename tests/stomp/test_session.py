"""The STOMP session without sockets: frames in, frames out, and what the model saw, against RabbitMQ 3.10's
observed behaviour (byte-exact where RabbitMQ's bytes are known)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from fakebroker.protocols.stomp.destinations import subscription_queue_name

SESSION = r"session-[A-Za-z0-9_-]{22}"
VERSIONS = "version:1.0,1.1,1.2\n"


def error_bytes(message: str, body: str) -> bytes:
    raw = body.encode()
    return (f"ERROR\nmessage:{message}\ncontent-type:text/plain\n{VERSIONS}content-length:{len(raw)}\n\n"
            .encode() + raw + b"\x00\n")


def queue(host: Any, name: str) -> Any:
    return host.model.vhost("/").queues.get(name)


# -- CONNECT --------------------------------------------------------------------------------------------
def test_connected_frame_as_rabbitmq(new_client: Any) -> None:
    c = new_client()
    c.send("CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest", "passcode": "guest"})
    raw = c.read_bytes()
    assert re.fullmatch(
        rb"CONNECTED\nserver:RabbitMQ/3\.10\.8\nsession:" + SESSION.encode()
        + rb"\nheart-beat:0,0\nversion:1\.2\n\n\x00\n",
        raw,
    ), raw
    assert c.session.describe()["protocol_version"] == "STOMP 1.2"


@pytest.mark.parametrize(("offered", "version"), [("1.0,1.1,1.2", "1.2"), ("1.1", "1.1"), ("1.0", "1.0"),
                                                  (None, "1.0"), ("1.2,1.0", "1.2"), ("2.0,1.1", "1.1")])
def test_version_negotiation(new_client: Any, offered: str | None, version: str) -> None:
    c = new_client()
    c.send("CONNECT", {"accept-version": offered} if offered else {})
    assert c.frame().get("version") == version


def test_version_mismatch_keeps_the_connection(new_client: Any) -> None:
    c = new_client()
    c.send("CONNECT", {"accept-version": "2.0"})
    assert c.read_bytes() == error_bytes("Version mismatch", "Supported versions are 1.0,1.1,1.2\n")
    assert not c.closed
    c.connect()


def test_stomp_command_connects(new_client: Any) -> None:
    c = new_client()
    c.send("STOMP", {"accept-version": "1.2", "host": "/"})
    assert c.frame().command == "CONNECTED"


@pytest.mark.parametrize(("client", "server"), [("1000,1000", "1000,1000"), ("0,5000", "5000,0"),
                                                ("5000,0", "0,5000"), ("100,100", "1000,1000"),
                                                ("1000,2500", "2000,1000"), ("0,0", "0,0")])
def test_heart_beat_negotiation(new_client: Any, client: str, server: str) -> None:
    c = new_client()
    assert c.connect(heart_beat=client).get("heart-beat") == server


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"login": "guest", "passcode": "wrong"}, "Access refused for user 'guest'\n"),
        ({"login": "nobody", "passcode": "x"}, "Access refused for user 'nobody'\n"),
        ({"host": "nosuchvhost"}, "Virtual host 'nosuchvhost' access denied"),
    ],
)
def test_bad_connect(new_client: Any, headers: dict[str, str], body: str) -> None:
    c = new_client()
    c.send("CONNECT", {"accept-version": "1.2", "host": "/", **headers})
    assert c.read_bytes() == error_bytes("Bad CONNECT", body)
    assert not c.closed and not c.session.connected


def test_no_login_uses_the_default_user(client: Any) -> None:
    assert client.session.user == "guest"


def test_anonymous_refused_when_not_allowed(client_of: Any) -> None:
    c = client_of(allow_anonymous=False)
    c.send("CONNECT", {"accept-version": "1.2"})
    assert c.read_bytes() == error_bytes("Bad CONNECT", "Missing login or passcode header(s)")


def test_frame_before_connect(new_client: Any) -> None:
    c = new_client()
    c.send("SEND", {"destination": "/topic/x"})
    assert c.read_bytes() == error_bytes("Illegal command", "You must log in using CONNECT first")
    assert not c.closed


def test_second_connect_closes_without_error(client: Any) -> None:
    client.send("CONNECT", {"accept-version": "1.2"})
    assert client.read_bytes() == b""
    assert client.closed


def test_unknown_command(client: Any) -> None:
    client.send("FOO", {"receipt": "r"})
    assert client.read_bytes() == error_bytes("Bad command", 'Could not interpret command "FOO"\n')
    assert not client.closed


def test_malformed_frame_closes_without_error(client: Any) -> None:
    client.send_raw(b"SEND\ndestination /queue/x\n\nbody\x00")
    assert client.read_bytes() == b""
    assert client.closed
    assert client.session.close_reason == "malformed frame: header_no_value"


# -- SEND destinations ----------------------------------------------------------------------------------
def test_send_to_queue_declares_it_durable(client: Any, host: Any) -> None:
    client.send("SEND", {"destination": "/queue/stomp-messages", "receipt": "r"}, b"hi")
    assert client.frame().get("receipt-id") == "r"
    q = queue(host, "stomp-messages")
    assert (q.durable, q.auto_delete, q.exclusive, q.arguments) == (True, False, False, {})
    assert [m.body for m in q.peek()] == [b"hi"]
    assert host.model.log[-1].exchange == "" and host.model.log[-1].routing_key == "stomp-messages"


def test_send_without_prefix_is_a_queue(client: Any, host: Any) -> None:
    client.send("SEND", {"destination": "foo-noslash"}, b"x")
    assert queue(host, "foo-noslash").durable


def test_send_to_queue_with_other_flags_is_an_amqp_error(client: Any, host: Any) -> None:
    host.model.vhost("/").declare_queue("rpc-requests")
    client.send("SEND", {"destination": "/queue/rpc-requests"}, b"x")
    assert client.read_bytes() == error_bytes(
        "precondition_failed",
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'rpc-requests' in vhost '/': "
        "received 'true' but current is 'false'")
    assert client.closed


def test_send_to_missing_amq_queue_is_dropped_silently(client: Any, host: Any) -> None:
    client.send("SEND", {"destination": "/amq/queue/custom-queue", "receipt": "r"}, b"x")
    assert client.frame().command == "RECEIPT"
    assert queue(host, "custom-queue") is None


def test_send_to_missing_exchange_closes(client: Any) -> None:
    client.send("SEND", {"destination": "/exchange/stomp-routing/example"}, b"x")
    assert client.read_bytes() == error_bytes("not_found", "NOT_FOUND - no exchange 'stomp-routing' in vhost '/'")
    assert client.closed


@pytest.mark.parametrize(("destination", "exchange", "key"), [
    ("/exchange/stomp-routing/example", "stomp-routing", "example"),
    ("/exchange/stomp-routing", "stomp-routing", ""),
    ("/topic/routing.key", "amq.topic", "routing.key"),
    ("/reply-queue/abc", "", "abc"),
    ("/topic/a%2Fb", "amq.topic", "a/b"),
])
def test_send_routing(client: Any, host: Any, destination: str, exchange: str, key: str) -> None:
    host.model.vhost("/").declare_exchange("stomp-routing", "direct")
    client.send("SEND", {"destination": destination, "receipt": "r"}, b"x")
    assert client.frame().command == "RECEIPT"
    logged = host.model.log[-1]
    assert (logged.exchange, logged.routing_key, logged.protocol) == (exchange, key, "stomp")


@pytest.mark.parametrize(("headers", "message", "body"), [
    ({"destination": "/queue/"}, "Invalid destination", "'/' is not a valid queue destination\n"),
    ({"destination": "/queue"}, "Invalid destination", "'' is not a valid queue destination\n"),
    ({"destination": "/amq/queue/"}, "Invalid destination", "'/' is not a valid amqqueue destination\n"),
    ({"destination": "/queue/a/b"}, "Invalid destination", "'/a/b' is not a valid queue destination\n"),
    ({"destination": "/exchange/"}, "Invalid destination", "'/' is not a valid exchange destination\n"),
    ({"destination": "/temp-queue/tq1"}, "Invalid destination",
     "'/temp-queue/tq1' is not a valid destination for 'SEND'\n"),
    ({"destination": ""}, "Invalid destination", "Destination cannot be blank"),
    ({"destination": "/foo/bar"}, "Unknown destination",
     "'/foo/bar' is not a valid destination.\nValid destination types are: /temp-queue, /exchange, /topic, "
     "/queue, /amq/queue, /reply-queue/.\n"),
    ({}, "Missing destination", "\"SEND\" must include a 'destination' header\n"),
    ({"destination": "/topic/x", "message-id": "m"}, "Invalid header", "'message-id' is not allowed on 'SEND'.\n"),
    ({"destination": "/topic/x", "priority": "high"}, "Processing error", "Processing error"),
])
def test_send_errors_keep_the_connection(client: Any, headers: dict[str, str], message: str, body: str) -> None:
    client.send("SEND", {**headers, "receipt": "r"}, b"x")
    assert client.read_bytes() == error_bytes(message, body)
    client.send("SEND", {"destination": "/topic/x", "receipt": "next"})
    assert client.frame().get("receipt-id") == "next"


def test_unknown_destination_error_is_135_bytes(client: Any) -> None:
    client.send("SEND", {"destination": "/foo/bar"})
    assert client.frame().get("content-length") == "135"


# -- header <-> property mapping ------------------------------------------------------------------------
def test_send_headers_to_amqp_properties(client: Any, host: Any) -> None:
    host.model.vhost("/").declare_queue("hdr-probe-amqp")
    client.send("SEND", [
        ("destination", "/amq/queue/hdr-probe-amqp"), ("app-id", "rabbitmq-in-depth"), ("priority", "5"),
        ("reply-to", "/queue/replies"), ("timestamp", "1400000000"), ("X-Custom-Header", "custom-value"),
        ("x-lower", "lower"), ("content-type", "application/json"), ("content-encoding", "gzip"),
        ("correlation-id", "corr-1"), ("expiration", "60000"), ("amqp-message-id", "amqp-msg-1"),
        ("type", "my-type"), ("user-id", "guest"), ("persistent", "true"), ("receipt", "rcpt-1"),
    ], b'{"hello": "world"}')
    message = queue(host, "hdr-probe-amqp").peek()[0]
    assert message.properties == {
        "content_type": "application/json", "content_encoding": "gzip", "delivery_mode": 2, "priority": 5,
        "correlation_id": "corr-1", "reply_to": "/queue/replies", "expiration": "60000",
        "message_id": "amqp-msg-1", "timestamp": 1400000000, "type": "my-type", "user_id": "guest",
        "app_id": "rabbitmq-in-depth",
        "headers": {"content-length": "18", "receipt": "rcpt-1", "x-lower": "lower",
                    "X-Custom-Header": "custom-value"},
    }
    # Reversed, as RabbitMQ's parser accumulates them (the encoder above writes content-length last).
    assert list(message.properties["headers"]) == ["content-length", "receipt", "x-lower", "X-Custom-Header"]


@pytest.mark.parametrize(("value", "mode"), [("true", 2), ("True", 2), ("false", None), ("1", None)])
def test_persistent_header(client: Any, host: Any, value: str, mode: int | None) -> None:
    host.model.vhost("/").declare_queue("p")
    client.send("SEND", {"destination": "/amq/queue/p", "persistent": value}, b"x")
    assert queue(host, "p").peek()[0].properties.get("delivery_mode") == mode


def test_message_frame_headers_in_rabbitmq_order(client: Any, host: Any) -> None:
    host.model.vhost("/").declare_queue("hdr")
    client.send("SUBSCRIBE", {"destination": "/amq/queue/hdr", "id": "sub-0", "ack": "client"})
    host.model.publish("", "hdr", b"0123456789abcdefgh", {
        "content_type": "application/json", "content_encoding": "gzip", "delivery_mode": 2, "priority": 5,
        "correlation_id": "corr-1", "reply_to": "some-queue", "expiration": "60000", "message_id": "m-1",
        "timestamp": 1400000000, "type": "my-type", "user_id": "guest", "app_id": "app",
        "headers": {"h-str": "v", "h-int": 42, "h-bool": True, "h-list": [1], "h-table": {"a": 1},
                    "x-mqtt-publish-qos": 1, "x-mqtt-dup": False},
    })
    frame = client.frame()
    message_id = frame.get("message-id")
    assert re.fullmatch(r"T_sub-0@@" + SESSION + r"@@1", message_id or "")
    assert frame.headers == [
        ("subscription", "sub-0"), ("destination", "/queue/hdr"), ("message-id", message_id),
        ("redelivered", "false"), ("ack", message_id), ("h-str", "v"), ("h-int", "42"), ("app-id", "app"),
        ("user-id", "guest"), ("type", "my-type"), ("timestamp", "1400000000"), ("amqp-message-id", "m-1"),
        ("expiration", "60000"), ("reply-to", "/reply-queue/some-queue"), ("correlation-id", "corr-1"),
        ("priority", "5"), ("persistent", "true"), ("content-encoding", "gzip"),
        ("content-type", "application/json"), ("content-length", "18"),
    ]


def test_message_quirks(client: Any, host: Any) -> None:
    client.send("SUBSCRIBE", {"destination": "/topic/q.#", "id": "s"})
    host.model.publish("amq.topic", "q.one", b"", {"delivery_mode": 1, "reply_to": "/queue/r"})
    frame = client.frame()
    # delivery_mode 1 shows as persistent:1; an empty body has no content-length; a destination reply-to stays.
    assert frame.headers[-2:] == [("reply-to", "/queue/r"), ("persistent", "1")]
    assert frame.get("content-length") is None


@pytest.mark.parametrize(("exchange", "key", "destination"), [
    ("", "q1", "/queue/q1"), ("amq.topic", "a.b", "/topic/a.b"), ("amq.fanout", "", "/exchange/amq.fanout"),
    ("amq.direct", "k/x", "/exchange/amq.direct/k%2Fx"), ("amq.topic", "é%", "/topic/%C3%A9%25"),
])
def test_message_destination_rebuilt(client: Any, host: Any, exchange: str, key: str, destination: str) -> None:
    vhost = host.model.vhost("/")
    vhost.declare_queue("tap")
    vhost.bind("tap", exchange, key) if exchange else None
    client.send("SUBSCRIBE", {"destination": "/amq/queue/tap", "id": "t"})
    host.model.publish(exchange, "tap" if exchange == "" else key, b"x")
    frame = client.frame()
    expected = "/queue/tap" if exchange == "" else destination
    assert frame.get("destination") == expected


def test_header_escaping_round_trip(client: Any, host: Any) -> None:
    client.send("SUBSCRIBE", {"destination": "/topic/esc", "id": "e"})
    client.send_raw(b"SEND\ndestination:/topic/esc\nh:a\\cb\\nc\\\\d\n\nx\x00")
    message = host.model.log[-1]
    assert message.headers["h"] == "a:b\nc\\d"
    assert b"\nh:a\\cb\\nc\\\\d\n" in bytes(client.read_bytes())


def test_user_id_must_be_the_login(client: Any) -> None:
    client.send("SEND", {"destination": "/topic/x", "user-id": "mallory"}, b"x")
    assert client.read_bytes() == error_bytes(
        "precondition_failed", "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user "
        "was 'guest'")
    assert client.closed


# -- reply-to /temp-queue/ ------------------------------------------------------------------------------
def test_temp_queue_reply_flow(client: Any, host: Any) -> None:
    vhost = host.model.vhost("/")
    vhost.declare_queue("rpc")
    client.send("SEND", {"destination": "/amq/queue/rpc", "reply-to": "/temp-queue/foo"}, b"ask")
    request = vhost.queues["rpc"].peek()[0]
    reply_queue = request.properties["reply_to"]
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", reply_queue)
    q = vhost.queues[reply_queue]
    assert (q.durable, q.auto_delete, q.exclusive) == (False, True, True)
    client.send("SEND", {"destination": "/amq/queue/rpc", "reply-to": "/temp-queue/foo"}, b"again")
    assert vhost.queues["rpc"].peek()[1].properties["reply_to"] == reply_queue
    client.send("SEND", {"destination": "/amq/queue/rpc", "reply-to": "/temp-queue/bar"}, b"other")
    assert vhost.queues["rpc"].peek()[2].properties["reply_to"] != reply_queue
    host.model.publish("", reply_queue, b"the reply", {"correlation_id": "c1"})
    frame = client.frame()
    assert frame.headers[:2] == [("subscription", "/temp-queue/foo"), ("destination", f"/queue/{reply_queue}")]
    assert re.fullmatch(r"T_/temp-queue/foo@@" + SESSION + "@@1", frame.get("message-id") or "")
    assert frame.headers[3:] == [("redelivered", "false"), ("correlation-id", "c1"), ("content-length", "9")]
    client.send("DISCONNECT")
    assert reply_queue not in vhost.queues


# -- SUBSCRIBE ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("destination", "headers", "flags", "binding"), [
    ("/topic/a.*", {}, (False, True, False), ("amq.topic", "a.*")),
    ("/exchange/amq.topic/a.#", {}, (False, True, False), ("amq.topic", "a.#")),
    ("/exchange/amq.direct/dkey", {}, (False, True, False), ("amq.direct", "dkey")),
    ("/exchange/amq.fanout", {}, (False, True, False), ("amq.fanout", "")),
    ("/topic/p.key", {"persistent": "true"}, (True, True, False), ("amq.topic", "p.key")),
    ("/topic/ex.key", {"exclusive": "true"}, (False, True, True), ("amq.topic", "ex.key")),
])
def test_subscription_queues(client: Any, host: Any, destination: str, headers: dict[str, str],
                             flags: tuple[bool, bool, bool], binding: tuple[str, str]) -> None:
    client.send("SUBSCRIBE", {"destination": destination, "id": "s1", **headers})
    vhost = host.model.vhost("/")
    [name] = [n for n in vhost.queues if n.startswith("stomp-subscription-")]
    assert re.fullmatch(r"stomp-subscription-[A-Za-z0-9_-]{22}", name)
    q = vhost.queues[name]
    assert (q.durable, q.auto_delete, q.exclusive) == flags
    assert [(b.source, b.routing_key) for b in vhost.bindings() if b.destination == name and b.source] == [
        binding]
    client.send("DISCONNECT")
    assert name not in vhost.queues


def test_durable_topic_subscription_name_and_lifetime(new_client: Any, host: Any) -> None:
    assert subscription_queue_name("d.key", "s-durable") == "stomp-subscription-PxG5A_uwZegilUsaUmzkSQ"
    assert subscription_queue_name("dur.noclient", "sub-1") == "stomp-subscription-xbPf2Y43IP_RDfRqhh6ULg"
    c = new_client()
    c.connect()
    c.send("SUBSCRIBE", {"destination": "/topic/d.key", "id": "s-durable", "durable": "true",
                         "auto-delete": "false"})
    vhost = host.model.vhost("/")
    name = "stomp-subscription-PxG5A_uwZegilUsaUmzkSQ"
    assert (vhost.queues[name].durable, vhost.queues[name].auto_delete) == (True, False)
    c.send("DISCONNECT")
    host.model.publish("amq.topic", "d.key", b"while away")
    assert name in vhost.queues
    c2 = new_client()
    c2.connect()
    c2.send("SUBSCRIBE", {"destination": "/topic/d.key", "id": "s-durable", "durable": "true",
                          "auto-delete": "false"})
    assert c2.frame().body == b"while away"
    c2.send("UNSUBSCRIBE", {"id": "s-durable", "durable": "true", "receipt": "u"})
    assert c2.frame().command == "RECEIPT"
    assert name not in vhost.queues


def test_queue_subscription_and_arguments(client: Any, host: Any) -> None:
    client.send("SUBSCRIBE", {"destination": "/queue/x", "id": "1", "x-max-length": "10",
                              "x-message-ttl": " 60000", "x-queue-type": "classic"})
    q = queue(host, "x")
    assert (q.durable, q.auto_delete, q.exclusive) == (True, False, False)
    assert q.arguments == {"x-max-length": 10, "x-message-ttl": 60000, "x-queue-type": "classic"}
    client.send("DISCONNECT")
    assert queue(host, "x") is not None


def test_x_queue_name(client: Any, host: Any) -> None:
    client.send("SUBSCRIBE", {"destination": "/topic/xq", "id": "xq", "x-queue-name": "my-named-sub"})
    q = queue(host, "my-named-sub")
    assert (q.durable, q.auto_delete, q.exclusive) == (False, True, False)


@pytest.mark.parametrize(("headers", "message", "body"), [
    ({"destination": "/temp-queue/tq", "id": "t"}, "Invalid destination",
     "'/temp-queue/tq' is not a valid destination for 'SUBSCRIBE'\n"),
    ({"destination": "/topic/d", "durable": "true"}, "Missing Header",
     "Header 'id' is required for durable subscriptions"),
    ({"destination": "/topic/d", "id": "a", "ack": "sometimes"}, "Processing error", "Processing error"),
])
def test_subscribe_errors_keep_the_connection(client: Any, headers: dict[str, str], message: str,
                                              body: str) -> None:
    client.send("SUBSCRIBE", headers)
    assert client.read_bytes() == error_bytes(message, body)
    assert not client.closed


def test_subscribe_to_missing_amq_queue_closes(client: Any) -> None:
    client.send("SUBSCRIBE", {"destination": "/amq/queue/missing-q", "id": "m"})
    assert client.read_bytes() == error_bytes("not_found", "NOT_FOUND - no queue 'missing-q' in vhost '/'")
    assert client.closed


def test_subscribe_to_missing_exchange_cleans_up(client: Any, host: Any) -> None:
    client.send("SUBSCRIBE", {"destination": "/exchange/nope/k", "id": "m"})
    assert client.read_bytes() == error_bytes("not_found", "NOT_FOUND - no exchange 'nope' in vhost '/'")
    assert not [n for n in host.model.vhost("/").queues if n.startswith("stomp-subscription-")]


def test_duplicate_subscription_id_closes(client: Any) -> None:
    client.send("SUBSCRIBE", {"destination": "/topic/a", "id": "dup"})
    client.send("SUBSCRIBE", {"destination": "/topic/b", "id": "dup"})
    assert client.read_bytes() == error_bytes("Duplicated subscription identifier",
                                              "A subscription identified by 'T_dup' already exists.")
    assert client.closed


def test_unsubscribe(client: Any, host: Any) -> None:
    client.send("UNSUBSCRIBE", {"id": "nope"})
    assert client.read_bytes() == error_bytes(
        "No subscription found",
        "UNSUBSCRIBE must refer to an existing subscription.\nSubscription to \"id='nope'\" not found.\n")
    client.send("SUBSCRIBE", {"destination": "/topic/u", "id": "u"})
    client.send("UNSUBSCRIBE", {"id": "u", "receipt": "r"})
    assert client.frame().get("receipt-id") == "r"
    assert not [n for n in host.model.vhost("/").queues if n.startswith("stomp-subscription-")]
    host.model.publish("amq.topic", "u", b"gone")
    assert client.frames() == []


def test_stomp_10_subscription_without_id(new_client: Any, host: Any) -> None:
    c = new_client()
    c.connect("1.0")
    c.send("SUBSCRIBE", {"destination": "  /topic/ten", "receipt": "  r"})
    assert c.frame().get("receipt-id") == "r"
    host.model.publish("amq.topic", "ten", b"t")
    frame = c.frame()
    assert "subscription" not in frame
    assert re.fullmatch(r"Q_/topic/ten@@" + SESSION + "@@1", frame.get("message-id") or "")
    c.send("UNSUBSCRIBE", {"destination": "/topic/ten", "receipt": "u"})
    assert c.frame().get("receipt-id") == "u"


def test_server_cancelled_subscription(client: Any, host: Any) -> None:
    host.model.vhost("/").declare_queue("doomed")
    client.send("SUBSCRIBE", {"destination": "/amq/queue/doomed", "id": "d"})
    host.model.vhost("/").delete_queue("doomed")
    assert client.read_bytes() == error_bytes(
        "Server cancelled subscription",
        "The server has canceled a subscription.\nNo more messages will be delivered for \"id='d'\".\n",
    ).replace(b"version:1.0,1.1,1.2\n", b"version:1.0,1.1,1.2\nsubscription:d\n")
    assert not client.closed


# -- acknowledgements -----------------------------------------------------------------------------------
def _three(client: Any, host: Any, ack: str) -> list[str]:
    host.model.vhost("/").declare_queue("acks")
    client.send("SUBSCRIBE", {"destination": "/amq/queue/acks", "id": "a", "ack": ack})
    for body in (b"1", b"2", b"3"):
        host.model.publish("", "acks", body)
    return [f.get("ack") for f in client.frames()]


def test_client_ack_is_cumulative(client: Any, host: Any) -> None:
    acks = _three(client, host, "client")
    client.send("ACK", {"id": acks[1], "receipt": "r"})
    assert client.frame().command == "RECEIPT"
    assert host.model.vhost("/").queues["acks"].unacked == 1


def test_client_individual_ack(client: Any, host: Any) -> None:
    acks = _three(client, host, "client-individual")
    client.send("ACK", {"id": acks[1]})
    assert host.model.vhost("/").queues["acks"].unacked == 2


def test_unacked_requeued_on_disconnect(client: Any, host: Any, new_client: Any) -> None:
    _three(client, host, "client")
    client.close()
    c2 = new_client()
    c2.connect()
    c2.send("SUBSCRIBE", {"destination": "/amq/queue/acks", "id": "a"})
    assert [(f.body, f.get("redelivered")) for f in c2.frames()] == [(b"1", "true"), (b"2", "true"), (b"3", "true")]


def test_nack_requeues_by_default(client: Any, host: Any) -> None:
    acks = _three(client, host, "client-individual")
    client.send("NACK", {"id": acks[0], "receipt": "n"})
    frames = client.frames()
    assert frames[0].command == "MESSAGE" and frames[0].body == b"1" and frames[0].get("redelivered") == "true"
    assert frames[0].get("ack") != acks[0]
    assert frames[1].get("receipt-id") == "n"


def test_nack_without_requeue_drops(client: Any, host: Any) -> None:
    acks = _three(client, host, "client-individual")
    client.send("NACK", {"id": acks[0], "requeue": "false"})
    assert client.frames() == []
    q = host.model.vhost("/").queues["acks"]
    assert (q.unacked, q.message_count) == (2, 0)


def test_ack_errors(client: Any, host: Any) -> None:
    acks = _three(client, host, "client")
    client.send("ACK", {"id": "nonsense"})
    assert client.read_bytes() == error_bytes("Invalid header", '"ACK" must include a valid "id" header\n')
    client.send("ACK", {})
    assert client.read_bytes() == error_bytes("Missing header", '"ACK" must include the "id" header\n')
    client.send("UNSUBSCRIBE", {"id": "a"})
    client.send("ACK", {"id": acks[0]})
    assert client.read_bytes() == error_bytes("Subscription not found",
                                              f'Message with id "{acks[0]}" has no subscription')
    assert not client.closed


def test_ack_of_an_auto_delivery_is_a_channel_error_after_the_receipt(client: Any, host: Any) -> None:
    client.send("SUBSCRIBE", {"destination": "/topic/e", "id": "e"})
    host.model.publish("amq.topic", "e", b"x")
    message_id = client.frame().get("message-id")
    client.send("ACK", {"id": message_id, "receipt": "ak"})
    assert client.read_bytes() == b"RECEIPT\nreceipt-id:ak\n\n\x00\n" + error_bytes(
        "precondition_failed", "PRECONDITION_FAILED - unknown delivery tag 1")
    assert client.closed


def test_stomp_11_acks_by_message_id(new_client: Any, host: Any) -> None:
    c = new_client()
    c.connect("1.1")
    host.model.vhost("/").declare_queue("acks")
    c.send("SUBSCRIBE", {"destination": "/amq/queue/acks", "id": "a", "ack": "client"})
    host.model.publish("", "acks", b"1")
    frame = c.frame()
    assert "ack" not in frame
    c.send("ACK", {"message-id": frame.get("message-id"), "subscription": "a"})
    assert host.model.vhost("/").queues["acks"].unacked == 0


def test_prefetch_count(client: Any, host: Any) -> None:
    host.model.vhost("/").declare_queue("pf")
    client.send("SUBSCRIBE", {"destination": "/amq/queue/pf", "id": "p", "ack": "client-individual",
                              "prefetch-count": "2"})
    for i in range(5):
        host.model.publish("", "pf", str(i).encode())
    frames = client.frames()
    assert len(frames) == 2
    client.send("ACK", {"id": frames[0].get("ack")})
    assert [f.body for f in client.frames()] == [b"2"]


# -- transactions and receipts --------------------------------------------------------------------------
def test_transaction_receipts_and_commit(client: Any, host: Any) -> None:
    client.send("BEGIN", {"transaction": "tx1", "receipt": "b1"})
    assert client.frame().get("receipt-id") == "b1"
    client.send("SEND", {"destination": "/queue/txq", "transaction": "tx1", "receipt": "s1"}, b"in tx")
    assert client.frames() == []
    assert queue(host, "txq").message_count == 0
    client.send("COMMIT", {"transaction": "tx1", "receipt": "c1"})
    assert [f.get("receipt-id") for f in client.frames()] == ["c1", "s1"]
    assert [m.body for m in queue(host, "txq").peek()] == [b"in tx"]
    assert queue(host, "txq").peek()[0].headers["transaction"] == "tx1"


def test_transaction_abort_and_errors(client: Any, host: Any) -> None:
    client.send("BEGIN", {"transaction": "t"})
    client.send("BEGIN", {"transaction": "t"})  # twice: no error
    client.send("SEND", {"destination": "/queue/txa", "transaction": "t"}, b"x")
    client.send("ABORT", {"transaction": "t", "receipt": "a"})
    assert client.frame().get("receipt-id") == "a"
    assert queue(host, "txa").message_count == 0
    client.send("COMMIT", {"transaction": "t"})
    assert client.read_bytes() == error_bytes("Bad transaction", 'Invalid transaction identifier: "t"\n')
    client.send("SEND", {"destination": "/queue/txa", "transaction": "nope"}, b"x")
    assert client.read_bytes() == error_bytes("Bad transaction", 'Invalid transaction identifier: "nope"\n')
    client.send("BEGIN", {})
    assert client.read_bytes() == error_bytes("Missing transaction", "\"BEGIN\" must include a 'transaction' header\n")
    assert not client.closed


def test_ack_in_aborted_transaction_stays_unacked(client: Any, host: Any) -> None:
    acks = _three(client, host, "client-individual")
    client.send("BEGIN", {"transaction": "t"})
    client.send("ACK", {"id": acks[0], "transaction": "t"})
    client.send("ABORT", {"transaction": "t"})
    assert host.model.vhost("/").queues["acks"].unacked == 3


@pytest.mark.parametrize("command", ["SUBSCRIBE", "UNSUBSCRIBE", "BEGIN", "ABORT", "SEND"])
def test_receipts_on_every_frame(client: Any, command: str) -> None:
    client.send("BEGIN", {"transaction": "t"})
    client.send("SUBSCRIBE", {"destination": "/topic/r", "id": "r0"})
    headers = {"SUBSCRIBE": {"destination": "/topic/r", "id": "r1"}, "UNSUBSCRIBE": {"id": "r0"},
               "BEGIN": {"transaction": "t2"}, "ABORT": {"transaction": "t"},
               "SEND": {"destination": "/topic/nobody.listens"}}[command]
    client.send(command, {**headers, "receipt": f"rc-{command}"})
    assert [(f.command, f.get("receipt-id")) for f in client.frames()] == [("RECEIPT", f"rc-{command}")]


def test_disconnect_receipt_then_close(client: Any) -> None:
    client.send("DISCONNECT", {"receipt": "bye-1"})
    assert client.read_bytes() == b"RECEIPT\nreceipt-id:bye-1\n\n\x00\n"
    assert client.closed


def test_websocket_disconnect_sends_no_receipt(new_client: Any) -> None:
    c = new_client("websocket")
    c.connect()
    c.send("DISCONNECT", {"receipt": "bye-1"})
    assert c.read_bytes() == b""
    assert c.closed


# -- heart-beats on the clock ---------------------------------------------------------------------------
def test_server_heart_beats(new_client: Any, host: Any) -> None:
    c = new_client()
    c.connect(heart_beat="0,1000")
    beats = []
    for _ in range(6):
        host.clock.advance(0.25)
        beats.append(c.read_bytes())
    assert beats == [b"", b"\n", b"", b"\n", b"", b"\n"]


def test_server_heart_beats_pause_while_other_frames_flow(new_client: Any, host: Any) -> None:
    c = new_client()
    c.connect(heart_beat="0,1000")
    host.clock.advance(0.5)
    assert c.read_bytes() == b"\n"
    c.send("SEND", {"destination": "/topic/x", "receipt": "r"})
    c.read_bytes()
    host.clock.advance(0.5)
    assert c.read_bytes() == b""  # the receipt was traffic enough
    host.clock.advance(0.5)
    assert c.read_bytes() == b"\n"


def test_websocket_heart_beats_every_full_interval(new_client: Any, host: Any) -> None:
    c = new_client("websocket")
    c.connect(heart_beat="0,1000")
    beats = []
    for _ in range(5):
        host.clock.advance(0.5)
        beats.append(c.read_bytes())
    assert beats == [b"\n", b"", b"\n", b"", b"\n"]


def test_silent_client_is_dropped_after_three_intervals(new_client: Any, host: Any) -> None:
    c = new_client()
    c.connect(heart_beat="1000,0")
    host.clock.advance(2.9)
    assert not c.closed
    host.clock.advance(0.1)
    assert c.closed and c.read_bytes() == b""
    assert c.session.close_reason == "missed heart-beats from the client"


def test_client_heart_beats_keep_the_connection(new_client: Any, host: Any) -> None:
    c = new_client()
    c.connect(heart_beat="1000,0")
    for _ in range(10):
        host.clock.advance(0.9)
        c.send_raw(b"\n")
    assert not c.closed


def test_heart_beat_timers_stop_with_the_connection(new_client: Any, host: Any) -> None:
    c = new_client()
    c.connect(heart_beat="1000,1000")
    c.send("DISCONNECT")
    c.close()
    assert host.clock.pending() == 0


# -- limits (off by default, as in RabbitMQ 3.10) -------------------------------------------------------
@pytest.mark.parametrize(("options", "data"), [
    ({"stomp_max_frame_size": 64}, b"SEND\ndestination:/topic/x\n\n" + b"x" * 100 + b"\x00"),
    ({"stomp_max_headers": 2}, b"SEND\ndestination:/topic/x\na:1\nb:2\n\n\x00"),
    ({"stomp_max_header_length": 25}, b"SEND\ndestination:/topic/xxxxxxxx\n\n\x00"),
    ({"stomp_max_body_size": 10}, b"SEND\ndestination:/topic/x\ncontent-length:11\n\n"),
])
def test_frame_limits_close_the_connection(client_of: Any, options: dict[str, int], data: bytes) -> None:
    c = client_of(**options)
    c.connect()
    c.send_raw(data)
    assert c.read_bytes() == b""
    assert c.closed and (c.session.close_reason or "").startswith("malformed frame: max_")


def test_no_limits_by_default(client: Any, host: Any) -> None:
    client.send("SUBSCRIBE", {"destination": "/topic/big", "id": "b"})
    body = b"x" * (5 * 1024 * 1024)
    client.send("SEND", [("destination", "/topic/big")] + [(f"h{i}", "v" * 200) for i in range(150)], body)
    frame = client.frame()
    assert len(frame.body) == len(body) and frame.get("h149") == "v" * 200


def test_connected_session_is_established(new_client: Any) -> None:
    c = new_client()
    assert not c.session.established
    c.send("CONNECT", {"accept-version": "2.0"})
    assert c.frame().command == "ERROR"
    assert not c.session.established  # refused: still in the handshake
    c.connect()
    assert c.session.established
