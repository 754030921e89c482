"""MQTT PUBLISH as the AMQP side sees it: exchange, routing key, properties, headers; acknowledgements."""

from __future__ import annotations

import pytest
from contractlib import Backend, Got, RawClient

from fakebroker.protocols.mqtt.codec import Pingreq, Pingresp, Puback, Publish, Will, encode


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


# -- a queue that refuses messages (x-overflow: reject-publish) ------------------------------------------
def full_queue(backend: Backend, overflow: str = "reject-publish") -> tuple[str, RawClient]:
    """A queue bound to ``P.m.#`` that takes two messages and refuses more, and an MQTT subscriber of
    ``P/m/#``; the publisher's will, if published, would reach that subscriber."""
    name = f"contract-full-{backend.prefix}"
    backend.declare_queue(name, arguments={"x-max-length": 2, "x-overflow": overflow})
    backend.bind(name, "amq.topic", "P.m.#")
    return name, backend.watcher(("P/m/#", 0), label="sub")


def queued(backend: Backend, name: str) -> list[bytes]:
    out = []
    while (got := backend.get(name)) is not None:
        out.append(got.body)
    return out


@pytest.mark.parametrize("overflow", ["reject-publish", "reject-publish-dlx"])
@pytest.mark.parametrize("qos", [1, 2])  # QoS 2 is PUBACKed and routed as 1
def test_refused_qos1_publish_closes_a_tcp_publisher(backend: Backend, overflow: str, qos: int) -> None:
    name, sub = full_queue(backend, overflow)
    pub = backend.raw()
    pub.connect(backend.cid("pub"), will=Will("P/m/will", b"not published", 1, False))
    assert pub.publish("P/m/1", b"m1", qos) == Puback(1)
    assert pub.publish("P/m/2", b"m2", qos) == Puback(2)
    pub.send(Publish("P/m/3", b"m3", qos, False, False, pub.next_pid()))
    assert pub.expect_closed() == []  # no PUBACK 3, and the connection is gone
    # Routed all the same: the subscriber has it, the full queue refused it.
    assert [p.payload for p in sub.publishes(3)] == [b"m1", b"m2", b"m3"]
    sub.expect_nothing()  # no will
    assert queued(backend, name) == [b"m1", b"m2"]


def test_refused_qos1_publish_over_websocket_is_not_acknowledged(backend: Backend) -> None:
    name, sub = full_queue(backend)
    pub = backend.raw(websocket=True)
    pub.connect(backend.cid("pub"))
    assert pub.publish("P/m/1", b"m1", 1) == Puback(1)
    assert pub.publish("P/m/2", b"m2", 1) == Puback(2)
    pub.send(Publish("P/m/3", b"m3", 1, False, False, pub.next_pid()))
    pub.send(Publish("P/m/4", b"m4", 1, False, False, pub.next_pid()))
    # Still open and acknowledging what no queue refuses; 3 and 4 never get a PUBACK.
    assert pub.publish("elsewhere", b"unrouted", 1) == Puback(5)
    pub.expect_open()
    pub.expect_nothing()
    assert [p.payload for p in sub.publishes(4)] == [b"m1", b"m2", b"m3", b"m4"]
    assert queued(backend, name) == [b"m1", b"m2"]


def test_refused_retained_publish_is_still_stored(backend: Backend) -> None:
    backend.declare_queue(f"contract-none-{backend.prefix}", arguments={"x-max-length": 0,
                                                                       "x-overflow": "reject-publish"})
    backend.bind(f"contract-none-{backend.prefix}", "amq.topic", "P.m.#")
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.send(Publish("P/m/state", b"kept", 1, True, False, pub.next_pid()))
    assert pub.expect_closed() == []
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    sub.subscribe(("P/m/state", 1))
    assert sub.recv_publish() == Publish("P/m/state", b"kept", 1, True, False, 1)


@pytest.mark.parametrize("websocket", [False, True], ids=["tcp", "websocket"])
def test_refused_qos0_publish_keeps_the_connection(backend: Backend, websocket: bool) -> None:
    name, sub = full_queue(backend)
    pub = backend.raw(websocket=websocket)
    pub.connect(backend.cid("pub"))
    for i in range(1, 5):
        pub.publish(f"P/m/{i}", b"m%d" % i, 0)
    pub.expect_open()
    assert [p.payload for p in sub.publishes(4)] == [b"m1", b"m2", b"m3", b"m4"]
    assert queued(backend, name) == [b"m1", b"m2"]


@pytest.mark.difference("mqtt-nothing-after-a-refused-qos-1-publish-is-read")
def test_packets_behind_a_refused_qos1_publish(backend: Backend) -> None:
    name, sub = full_queue(backend)
    other = backend.watcher(("other/#", 0), label="other")
    backend.publish("amq.topic", "P.m.0", b"m0")
    backend.publish("amq.topic", "P.m.1", b"m1")  # full
    assert [p.payload for p in sub.publishes(2)] == [b"m0", b"m1"]
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    # One write: the refused PUBLISH, a PINGREQ and a PUBLISH no queue refuses.
    pub.send(encode(Publish("P/m/2", b"refused", 1, False, False, 1)) + encode(Pingreq())
             + encode(Publish("other/t", b"behind", 1, False, False, 2)))
    sent = pub.expect_closed()
    assert [p.payload for p in sub.publishes(1)] == [b"refused"]
    if backend.is_fake:
        assert sent == []
    else:
        # RabbitMQ handles the whole read before the confirm's nack stops the connection; the second PUBACK
        # races with that nack.
        assert sent[0] == Pingresp() and sent[1:] in ([], [Puback(2)]), sent
        assert other.recv_publish().payload == b"behind"
    other.expect_nothing()
    sub.expect_nothing()
    assert queued(backend, name) == [b"m0", b"m1"]
