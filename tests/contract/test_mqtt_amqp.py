"""The AMQP side of MQTT: headers either way, and the documented differences that need it or a clock."""

from __future__ import annotations

import amqpkit
import pika
import pytest
from contractlib import Backend, Got

from fakebroker.protocols.mqtt.codec import Connack, Publish, Suback, Subscribe


def test_mqtt_publish_to_a_declared_queue(backend: Backend) -> None:
    backend.declare_queue("contract-orders", durable=True)
    backend.bind("contract-orders", "amq.topic", "orders.*")
    c = backend.raw()
    c.connect()
    c.publish("orders/eu", b'{"id": 1}', 1)
    c.publish("orders/us", b'{"id": 2}', 0)
    c.publish("orders/eu/late", b"not matched", 1)
    first, second = backend.get_wait("contract-orders"), backend.get_wait("contract-orders")
    assert (first.routing_key, first.body, first.properties["delivery_mode"]) == ("orders.eu", b'{"id": 1}', 2)
    assert (second.routing_key, second.body, second.properties["delivery_mode"]) == ("orders.us", b'{"id": 2}', 1)
    assert backend.get("contract-orders") is None


def test_amqp_properties_do_not_reach_mqtt_but_the_body_does(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    c.subscribe(("props/t", 1))
    body = bytes(range(256))
    backend.publish("amq.topic", "props.t", body, {
        "content_type": "application/octet-stream", "correlation_id": "c-1", "message_id": "m-1",
        "headers": {"h": "v"}, "delivery_mode": 2})
    assert c.recv_publish() == Publish("props/t", body, 1, False, False, 1)


def test_mqtt_message_read_back_over_amqp_keeps_its_headers(backend: Backend) -> None:
    # Round trip: MQTT publish -> queue -> basic.get -> republish over AMQP -> MQTT subscriber.
    tap = backend.tap("rt.#")
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("rt/in", b"round trip", 0)
    got = backend.get_wait(tap)
    assert got == Got("amq.topic", "rt.in", b"round trip",
                      {"delivery_mode": 1, "headers": {"x-mqtt-publish-qos": 0, "x-mqtt-dup": False}}, False)
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    sub.subscribe(("rt/out", 1))
    # The management API can only send the qos header as a long int: republish with the dup header only.
    backend.publish("amq.topic", "rt.out", got.body, {"delivery_mode": 1, "headers": {"x-mqtt-dup": False}})
    assert sub.recv_publish() == Publish("rt/out", b"round trip", 1, False, False, 1)


def test_amqp_dup_header_sets_dup_at_qos1_and_drops_at_qos0(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    c.subscribe(("dup/one", 1), ("dup/zero", 0), ("dup/marker", 0))
    backend.publish("amq.topic", "dup.one", b"again", {"headers": {"x-mqtt-dup": True}})
    assert c.recv_publish() == Publish("dup/one", b"again", 1, False, True, 1)
    backend.publish("amq.topic", "dup.zero", b"dropped", {"headers": {"x-mqtt-dup": True}})
    backend.publish("amq.topic", "dup.marker", b"marker")
    assert c.recv_publish().payload == b"marker"  # same queue: the dropped one would have come first
    c.expect_nothing()


def test_default_exchange_publish_to_a_subscription_queue(backend: Backend) -> None:
    # The subscription queue is an ordinary queue: the default exchange reaches it by name, and the MQTT
    # topic is that routing key.
    c = backend.raw()
    cid = backend.cid("direct")
    c.connect(cid)
    c.subscribe(("any/t", 1))
    name = backend.queue_name(cid, 1)
    assert backend.publish("", name, b"by queue name")
    assert c.recv_publish() == Publish(name, b"by queue name", 1, False, False, 1)


# -- TTL 0: delivered to a consumer that can take it at once, dropped otherwise ----------------------------
def test_expiration_zero_reaches_connected_subscribers(backend: Backend) -> None:
    s0 = backend.watcher(("ttl/#", 0), label="s0")
    s1 = backend.watcher(("ttl/#", 1), label="s1")
    backend.publish("amq.topic", "ttl.zero", b"ttl 0", {"expiration": "0"})
    assert s0.recv_publish() == Publish("ttl/zero", b"ttl 0", 0, False, False, None)
    assert s1.recv_publish() == Publish("ttl/zero", b"ttl 0", 1, False, False, 1)


def test_expiration_zero_is_dropped_for_a_subscriber_with_a_full_window(backend: Backend) -> None:
    sub = backend.raw()
    sub.connect(backend.cid("busy"))
    sub.subscribe(("win/t", 1))
    for i in range(10):
        backend.publish("amq.topic", "win.t", b"%d" % i)
    got = sub.publishes(10)  # the in-flight window is full
    backend.publish("amq.topic", "win.t", b"ttl 0", {"expiration": "0"})
    backend.publish("amq.topic", "win.t", b"marker")
    for p in got:
        sub.puback(p.packet_id)
    assert sub.recv_publish().payload == b"marker"
    sub.expect_nothing()


def test_expiration_zero_is_dropped_for_an_offline_persistent_session(backend: Backend) -> None:
    cid = backend.cid("away")
    c = backend.raw()
    c.connect(cid, clean_session=False)
    c.subscribe(("away/t", 1))
    c.disconnect()
    backend.publish("amq.topic", "away.t", b"ttl 0", {"expiration": "0"})
    backend.publish("amq.topic", "away.t", b"kept")
    again = backend.raw()
    assert again.connect(cid, clean_session=False) == Connack(True, 0)
    assert again.recv_publish().payload == b"kept"
    again.expect_nothing()


@pytest.mark.parametrize("ttl", ["x-message-ttl", "expiration"])
def test_ttl_zero_message_is_never_fetched_with_basic_get(backend: Backend, ttl: str) -> None:
    name = f"contract-ttl0-{backend.prefix}"
    backend.declare_queue(name, arguments={"x-message-ttl": 0} if ttl == "x-message-ttl" else None)
    backend.bind(name, "amq.topic", "t0.#")
    assert backend.publish("amq.topic", "t0.a", b"ttl 0", {"expiration": "0"} if ttl == "expiration" else None)
    assert backend.get(name) is None


@pytest.mark.parametrize("ttl", ["x-message-ttl", "expiration"])
def test_ttl_zero_reaches_a_stomp_consumer_with_room_only(backend: Backend, ttl: str) -> None:
    # The rule is the queue's, whatever the consumer's protocol.
    backend.declare_queue("ttl0", arguments={"x-message-ttl": 0} if ttl == "x-message-ttl" else None)
    props = {"expiration": "0"} if ttl == "expiration" else None
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/amq/queue/ttl0", "id": "t", "ack": "client-individual",
                         "prefetch-count": "1", "receipt": "s"})
    c.receipt("s")
    backend.publish("", "ttl0", b"taken", props)
    first = c.recv_command("MESSAGE")
    assert first.body == b"taken"
    backend.publish("", "ttl0", b"window full", props)
    c.expect_nothing()
    c.send("ACK", {"id": first.get("ack"), "receipt": "a"})
    c.receipt("a")
    c.expect_nothing()  # dropped, not kept for when there is room
    assert backend.get("ttl0") is None


@pytest.mark.parametrize("ttl", ["x-message-ttl", "expiration"])
def test_ttl_zero_reaches_an_amqp_consumer_with_room_only(backend: Backend, ttl: str) -> None:
    conn = amqpkit.connect(backend)
    ch = conn.channel()
    # Each publish returns once the queue has taken or dropped the message: otherwise the ack below could
    # reach the queue first (RabbitMQ sends the two on different paths) and make room for "window full".
    ch.confirm_delivery()
    ch.queue_declare("ttl0", arguments={"x-message-ttl": 0} if ttl == "x-message-ttl" else None)
    props = pika.BasicProperties(expiration="0" if ttl == "expiration" else None)
    ch.basic_publish("", "ttl0", b"nobody there", props)
    assert ch.basic_get("ttl0", auto_ack=True) == (None, None, None)  # basic.get never sees it
    ch.basic_qos(prefetch_count=1)
    got = amqpkit.Collector(conn)
    ch.basic_consume("ttl0", got)
    ch.basic_publish("", "ttl0", b"taken", props)
    [(method, _, _)] = got.wait(1)
    ch.basic_publish("", "ttl0", b"window full", props)
    ch.basic_ack(method.delivery_tag)
    ch.basic_publish("", "ttl0", b"room again", props)
    got.wait(2)
    conn.process_data_events(time_limit=backend.quiet)
    assert got.bodies == [b"taken", b"room again"]


def test_expiration_zero_behind_another_message_expires_when_it_reaches_the_head(backend: Backend) -> None:
    name = f"contract-ttl0-{backend.prefix}"
    backend.declare_queue(name)
    backend.bind(name, "amq.topic", "t0.#")
    backend.publish("amq.topic", "t0.a", b"first")
    backend.publish("amq.topic", "t0.b", b"ttl 0", {"expiration": "0"})
    backend.publish("amq.topic", "t0.c", b"third")
    assert [backend.get(name), backend.get(name), backend.get(name)] == [
        Got("amq.topic", "t0.a", b"first", {}, False), Got("amq.topic", "t0.c", b"third", {}, False), None]


@pytest.mark.difference("mqtt-int-typed-x-mqtt-publish-qos-header-is-honoured")
def test_int_typed_publish_qos_header(backend: Backend) -> None:
    # The management API (and the fake's API) sends a JSON int: an AMQP long, not a byte.
    c = backend.raw()
    c.connect()
    c.subscribe(("int/q", 1))
    backend.publish("amq.topic", "int.q", b"qos as long", {"headers": {"x-mqtt-publish-qos": 0}})
    if backend.is_fake:
        assert c.recv_publish() == Publish("int/q", b"qos as long", 0, False, False, None)
        c.expect_open()
    else:
        assert c.expect_closed() == []  # {case_clause,{long,0}} in rabbit_mqtt_processor:delivery_qos/3


@pytest.mark.difference("mqtt-a-non-boolean-x-mqtt-dup-header-is-ignored")
def test_non_boolean_dup_header(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    c.subscribe(("strdup/t", 1))
    backend.publish("amq.topic", "strdup.t", b"dup as string", {"headers": {"x-mqtt-dup": "yes"}})
    if backend.is_fake:
        assert c.recv_publish() == Publish("strdup/t", b"dup as string", 1, False, False, 1)
    else:
        assert c.expect_closed() == []


@pytest.mark.difference("mqtt-keepalive-expiry-after-15--keepalive")
def test_keepalive_factor(backend: Backend) -> None:
    c = backend.raw()
    c.connect(keepalive=1)
    backend.advance(2.0)  # past 1.5 x keepalive, short of 3 x
    if backend.is_fake:
        assert c.expect_closed() == []
    else:
        c.expect_nothing()  # still open (nothing sent, so the keepalive timer is not reset)
        backend.advance(1.5)
        assert c.expect_closed() == []


@pytest.mark.difference("mqtt-packet-ids-never-collide")
def test_retained_packet_id_after_suback(backend: Backend) -> None:
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("pid/t", b"stored", 1, retain=True)
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    sub.send(Subscribe(7, [("pid/t", 1)]))
    assert sub.recv() == Suback(7, [1])
    retained = sub.recv_publish()
    # RabbitMQ numbers it from the SUBSCRIBE's packet id; fakebroker from its own delivery counter.
    assert retained == Publish("pid/t", b"stored", 1, True, False, 1 if backend.is_fake else 7)
