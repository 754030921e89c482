"""MQTT PUBLISH as the AMQP side sees it: exchange, routing key, properties, headers; acknowledgements."""

from __future__ import annotations

import pytest
from contractlib import Backend, Got

from fakebroker.protocols.mqtt.codec import Puback, Publish


def test_qos1_publish_is_acked_and_routed_with_mqtt_headers(backend: Backend) -> None:
    tap = backend.tap()
    c = backend.raw()
    c.connect()
    assert c.publish("mqtt/example", b"hello qos1", 1) == Puback(1)
    assert backend.get_wait(tap) == Got(
        "amq.topic", "mqtt.example", b"hello qos1",
        {"delivery_mode": 2, "headers": {"x-mqtt-publish-qos": 1, "x-mqtt-dup": False}}, False)


def test_qos0_publish_is_transient(backend: Backend) -> None:
    tap = backend.tap()
    c = backend.raw()
    c.connect()
    c.publish("mqtt/zero", b"hello qos0", 0)
    assert backend.get_wait(tap) == Got(
        "amq.topic", "mqtt.zero", b"hello qos0",
        {"delivery_mode": 1, "headers": {"x-mqtt-publish-qos": 0, "x-mqtt-dup": False}}, False)


def test_dup_flag_becomes_a_header(backend: Backend) -> None:
    tap = backend.tap()
    c = backend.raw()
    c.connect()
    assert c.publish("mqtt/dup", b"again", 1, dup=True) == Puback(1)
    got = backend.get_wait(tap)
    assert got.headers == {"x-mqtt-publish-qos": 1, "x-mqtt-dup": True}
    assert got.redelivered is False


@pytest.mark.parametrize(
    ("topic", "routing_key"),
    [
        ("a.b/c d", "a.b.c d"),
        ("/leading/slash", ".leading.slash"),
        ("trailing/", "trailing."),
        ("j2//double", "j2..double"),
        ("j2/ü", "j2.ü"),
        ("/", "."),
        ("plain", "plain"),
    ],
)
def test_topic_to_routing_key(backend: Backend, topic: str, routing_key: str) -> None:
    tap = backend.tap()
    c = backend.raw()
    c.connect()
    c.publish(topic, b"x", 1)
    got = backend.get_wait(tap)
    assert (got.exchange, got.routing_key) == ("amq.topic", routing_key)


def test_topic_mapping_round_trips_to_a_subscriber(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    assert c.subscribe(("#", 0)) == [0]
    for topic in ("a.b/c d", "/lead", "trail/", "j2//double"):
        c.publish(topic, topic.encode(), 0)
    got = c.publishes(4)
    # A dot in an MQTT topic comes back as a slash: the mapping is not escaped.
    assert sorted((p.topic, p.payload) for p in got) == sorted(
        [("a/b/c d", b"a.b/c d"), ("/lead", b"/lead"), ("trail/", b"trail/"), ("j2//double", b"j2//double")])


def test_unroutable_qos1_publish_is_still_acked(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    assert c.publish("nobody/listens", b"lost", 1) == Puback(1)
    c.expect_open()


def test_qos2_publish_gets_puback_and_travels_as_qos1(backend: Backend) -> None:
    tap = backend.tap()
    c = backend.raw()
    c.connect()
    assert c.publish("q2/topic", b"exactly once?", 2) == Puback(1)
    got = backend.get_wait(tap)
    assert got.properties == {"delivery_mode": 2, "headers": {"x-mqtt-publish-qos": 1, "x-mqtt-dup": False}}
    c.expect_nothing()


def test_puback_for_unknown_packet_id_is_ignored(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    c.send(Puback(42))
    c.expect_open()


def test_retain_flag_is_cleared_on_live_delivery(backend: Backend) -> None:
    tap = backend.tap()
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    sub.subscribe(("live/r", 1))
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("live/r", b"kept", 1, retain=True)
    assert sub.recv_publish() == Publish("live/r", b"kept", 1, False, False, 1)
    assert backend.get_wait(tap).properties["delivery_mode"] == 2
    pub.publish("live/r", b"", 1, retain=True)  # clear what this test retained


def test_packet_ids_of_deliveries_start_at_1_per_connection(backend: Backend) -> None:
    a = backend.raw()
    a.connect(backend.cid("a"))
    a.subscribe(("ids", 1))
    for i in range(3):
        a.publish("ids", b"%d" % i, 1)
    got = a.publishes(3)
    assert [p.packet_id for p in got] == [1, 2, 3]
    for p in got:
        a.puback(p.packet_id)
    b = backend.raw()
    b.connect(backend.cid("b"))
    b.subscribe(("ids", 1))
    a.publish("ids", b"next", 1)
    assert b.recv_publish().packet_id == 1
    assert a.recv_publish().packet_id == 4


def test_qos1_retransmission_is_routed_again(backend: Backend) -> None:
    tap = backend.tap("re.#")
    c = backend.raw()
    c.connect()
    c.send(Publish("re/t", b"same", 1, False, False, 9))
    assert c.recv() == Puback(9)
    c.send(Publish("re/t", b"same", 1, False, True, 9))
    assert c.recv() == Puback(9)
    assert [backend.get_wait(tap).headers["x-mqtt-dup"] for _ in range(2)] == [False, True]
