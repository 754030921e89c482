"""AMQP 0-9-1: bindings, exchange types, exchange-to-exchange bindings, alternate exchanges, publish errors."""

from __future__ import annotations

from decimal import Decimal

import pika
from amqpkit import Collector, channel, channel_error, connect, pump
from contractlib import Backend


def bodies(ch: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> list[bytes]:
    out = []
    while True:
        method, _, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append(body)


def test_bind_to_a_missing_queue_or_exchange(backend: Backend) -> None:
    ch = channel(backend)
    ch.queue_declare("q")
    assert channel_error(lambda: ch.queue_bind("missing", "amq.topic", "#")) == (
        404, f"NOT_FOUND - no queue 'missing' in vhost '{backend.vhost}'")
    ch = channel(backend)
    assert channel_error(lambda: ch.queue_bind("q", "missing", "#")) == (
        404, f"NOT_FOUND - no exchange 'missing' in vhost '{backend.vhost}'")
    ch = channel(backend)
    assert channel_error(lambda: ch.queue_bind("missing", "missing", "#")) == (
        404, f"NOT_FOUND - no exchange 'missing' in vhost '{backend.vhost}'")


def test_binding_to_the_default_exchange_is_refused(backend: Backend) -> None:
    ch = channel(backend)
    ch.queue_declare("q")
    assert channel_error(lambda: ch.queue_bind("q", "", "q")) == (
        403, "ACCESS_REFUSED - operation not permitted on the default exchange")


def test_topic_bindings_and_unbind(backend: Backend) -> None:
    ch = channel(backend)
    ch.queue_declare("q")
    ch.queue_bind("q", "amq.topic", "sensors.*.temp")
    ch.queue_bind("q", "amq.topic", "alerts.#")
    for key in ("sensors.kitchen.temp", "sensors.kitchen.humidity", "alerts", "alerts.fire.now", "sensors.temp"):
        ch.basic_publish("amq.topic", key, key.encode())
    assert bodies(ch, "q") == [b"sensors.kitchen.temp", b"alerts", b"alerts.fire.now"]
    ch.queue_unbind("q", "amq.topic", "alerts.#")
    ch.queue_unbind("q", "amq.topic", "never.bound")  # a missing binding is not an error
    ch.basic_publish("amq.topic", "alerts.fire", b"gone")
    assert bodies(ch, "q") == []


def test_direct_fanout_and_default_exchanges(backend: Backend) -> None:
    ch = channel(backend)
    for q in ("a", "b"):
        ch.queue_declare(q)
        ch.queue_bind(q, "amq.fanout")
    ch.queue_bind("a", "amq.direct", "only-a")
    ch.basic_publish("amq.fanout", "ignored", b"everyone")
    ch.basic_publish("amq.direct", "only-a", b"direct")
    ch.basic_publish("", "b", b"by name")
    assert bodies(ch, "a") == [b"everyone", b"direct"]
    assert bodies(ch, "b") == [b"everyone", b"by name"]


def test_headers_exchange_all_and_any(backend: Backend) -> None:
    ch = channel(backend)
    for q, match in (("all", "all"), ("any", "any")):
        ch.queue_declare(q)
        ch.queue_bind(q, "amq.headers", arguments={"x-match": match, "kind": "photo", "size": "big"})
    for headers in ({"kind": "photo", "size": "big"}, {"kind": "photo"}, {"other": 1}):
        ch.basic_publish("amq.headers", "", repr(sorted(headers)).encode(), pika.BasicProperties(headers=headers))
    assert bodies(ch, "all") == [b"['kind', 'size']"]
    assert bodies(ch, "any") == [b"['kind', 'size']", b"['kind']"]


def test_exchange_to_exchange_bindings(backend: Backend) -> None:
    ch = channel(backend)
    ch.exchange_declare("upstream", "topic")
    ch.exchange_declare("downstream", "fanout")
    ch.queue_declare("q")
    ch.queue_bind("q", "downstream")
    ch.exchange_bind("downstream", "upstream", "orders.#")
    ch.basic_publish("upstream", "orders.eu", b"routed")
    ch.basic_publish("upstream", "invoices.eu", b"not routed")
    ch.exchange_unbind("downstream", "upstream", "orders.#")
    ch.basic_publish("upstream", "orders.us", b"unbound")
    assert bodies(ch, "q") == [b"routed"]


def test_exchange_binding_errors(backend: Backend) -> None:
    ch = channel(backend)
    ch.exchange_declare("dst", "fanout")
    assert channel_error(lambda: ch.exchange_bind("dst", "missing", "#")) == (
        404, f"NOT_FOUND - no exchange 'missing' in vhost '{backend.vhost}'")
    ch = channel(backend)
    assert channel_error(lambda: ch.exchange_bind("dst", "", "#")) == (
        403, "ACCESS_REFUSED - operation not permitted on the default exchange")


def test_a_binding_cycle_delivers_once(backend: Backend) -> None:
    ch = channel(backend)
    ch.exchange_declare("x1", "fanout")
    ch.exchange_declare("x2", "fanout")
    ch.exchange_bind("x2", "x1")
    ch.exchange_bind("x1", "x2")
    ch.queue_declare("q")
    ch.queue_bind("q", "x1")
    ch.queue_bind("q", "x2")
    ch.basic_publish("x1", "", b"once")
    assert bodies(ch, "q") == [b"once"]


def test_alternate_exchange_takes_what_is_unroutable(backend: Backend) -> None:
    ch = channel(backend)
    ch.exchange_declare("unrouted", "fanout")
    ch.queue_declare("lost-and-found")
    ch.queue_bind("lost-and-found", "unrouted")
    ch.exchange_declare("main", "direct", arguments={"alternate-exchange": "unrouted"})
    ch.queue_declare("known")
    ch.queue_bind("known", "main", "known")
    ch.basic_publish("main", "known", b"routed")
    ch.basic_publish("main", "unknown", b"alternate")
    assert bodies(ch, "known") == [b"routed"]
    assert bodies(ch, "lost-and-found") == [b"alternate"]


def test_deleting_an_exchange_removes_its_bindings(backend: Backend) -> None:
    ch = channel(backend)
    ch.exchange_declare("ex", "fanout")
    ch.queue_declare("q")
    ch.queue_bind("q", "ex")
    ch.exchange_delete("ex")
    ch.exchange_declare("ex", "fanout")
    ch.basic_publish("ex", "", b"no binding any more")
    assert bodies(ch, "q") == []


def test_an_auto_delete_exchange_goes_with_its_last_binding(backend: Backend) -> None:
    ch = channel(backend)
    ch.exchange_declare("ad", "fanout", auto_delete=True)
    ch.exchange_declare("ad", passive=True)  # no binding yet: it stays
    ch.queue_declare("q")
    ch.queue_bind("q", "ad")
    ch.queue_unbind("q", "ad")
    assert channel_error(lambda: ch.exchange_declare("ad", passive=True))[0] == 404


def test_publish_to_a_missing_exchange_closes_only_the_channel(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    ch.basic_publish("missing", "k", b"x")
    assert channel_error(lambda: ch.queue_declare("q")) == (
        404, f"NOT_FOUND - no exchange 'missing' in vhost '{backend.vhost}'")
    assert conn.is_open
    conn.channel().queue_declare("q")


def test_publish_to_an_internal_exchange_is_refused(backend: Backend) -> None:
    ch = channel(backend)
    ch.exchange_declare("inner", "fanout", internal=True)
    ch.basic_publish("inner", "", b"x")
    assert channel_error(lambda: ch.queue_declare("q")) == (
        403, f"ACCESS_REFUSED - cannot publish to internal exchange 'inner' in vhost '{backend.vhost}'")


def test_mandatory_unroutable_messages_come_back(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    returned: list[tuple[int, str, str, str, bytes, str]] = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append(
        (m.reply_code, m.reply_text, m.exchange, m.routing_key, b, p.message_id)))
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"routed", mandatory=True)
    ch.basic_publish("amq.topic", "nobody.home", b"lost", pika.BasicProperties(message_id="m-1"), mandatory=True)
    ch.basic_publish("amq.topic", "nobody.either", b"not mandatory")
    pump(conn, lambda: bool(returned))
    Collector(conn).settle(backend.quiet)
    assert returned == [(312, "NO_ROUTE", "amq.topic", "nobody.home", b"lost", "m-1")]


def test_properties_and_headers_round_trip(backend: Backend) -> None:
    ch = channel(backend)
    ch.queue_declare("q")
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8", delivery_mode=2, priority=5,
        correlation_id="corr", reply_to="replies", expiration="60000", message_id="id-1", timestamp=1_700_000_000,
        type="reading", user_id="guest", app_id="sensor-app",
        headers={"str": "v", "int": 7, "neg": -3, "bool": True, "decimal": Decimal("1.5"), "list": [1, "a"],
                 "table": {"k": "v"}, "none": None})
    ch.basic_publish("", "q", b'{"t": 21}', props)
    method, got, body = ch.basic_get("q", auto_ack=True)
    assert body == b'{"t": 21}' and method.redelivered is False and method.routing_key == "q"
    for name in ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
                 "expiration", "message_id", "timestamp", "type", "user_id", "app_id"):
        assert getattr(got, name) == getattr(props, name), name
    headers = dict(got.headers)
    assert headers["str"] in ("v", b"v") and headers["list"][1] in ("a", b"a")
    assert {k: headers[k] for k in ("int", "neg", "bool", "decimal", "none")} == {
        "int": 7, "neg": -3, "bool": True, "decimal": Decimal("1.5"), "none": None}
    assert dict(headers["table"]) in ({"k": "v"}, {"k": b"v"})


def test_user_id_must_match_the_login(backend: Backend) -> None:
    ch = channel(backend)
    ch.basic_publish("amq.topic", "k", b"x", pika.BasicProperties(user_id="mallory"))
    assert channel_error(lambda: ch.queue_declare("q")) == (
        406, "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'")
