"""SUBSCRIBE / UNSUBSCRIBE: SUBACK codes, the queues and bindings behind them, wildcard matching, QoS levels."""

from __future__ import annotations

import pytest
from contractlib import Backend, QueueState

from fakebroker.protocols.mqtt.codec import Publish

TRANSIENT = (False, True, False)  # (durable, auto_delete, exclusive)


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "persistent"])
def test_subscription_queues_and_flags(backend: Backend, clean: bool) -> None:
    c = backend.raw()
    cid = backend.cid("facebook")
    c.connect(cid, clean_session=clean)
    assert backend.queues() == {}  # a CONNECT alone declares nothing
    assert c.subscribe(("fb/qos0/#", 0), ("fb/qos1/+", 1)) == [0, 1]
    q0, q1 = backend.queue_name(cid, 0), backend.queue_name(cid, 1)
    assert backend.queues() == {
        q0: QueueState(q0, False, True, False, {}),
        q1: QueueState(q1, True, True, False, {}) if clean else QueueState(q1, True, False, False,
                                                                           {"x-expires": 5000}),
    }
    assert backend.bindings(q0) == [("amq.topic", "fb.qos0.#")]
    assert backend.bindings(q1) == [("amq.topic", "fb.qos1.*")]


def test_queues_are_declared_lazily_per_qos(backend: Backend) -> None:
    c = backend.raw()
    cid = backend.cid("lazy")
    c.connect(cid)
    c.subscribe(("only/zero", 0))
    assert list(backend.queues()) == [backend.queue_name(cid, 0)]
    c.subscribe(("now/one", 1))
    assert sorted(backend.queues()) == [backend.queue_name(cid, 0), backend.queue_name(cid, 1)]


@pytest.mark.parametrize(
    ("topic_filter", "binding_key"),
    [("a.b/c", "a.b.c"), ("+/x/#", "*.x.#"), ("#", "#"), ("/lead", ".lead"), ("trail/", "trail."),
     ("a//b", "a..b"), ("$SYS/#", "$SYS.#")],
)
def test_filter_to_binding_key(backend: Backend, topic_filter: str, binding_key: str) -> None:
    c = backend.raw()
    cid = backend.cid("bk")
    c.connect(cid)
    assert c.subscribe((topic_filter, 1)) == [1]
    assert backend.bindings(backend.queue_name(cid, 1)) == [("amq.topic", binding_key)]


def test_suback_downgrades_qos2_to_1(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    assert c.subscribe(("f/two", 2), ("f/one", 1), ("f/zero", 0)) == [1, 1, 0]


def test_requested_qos_3_closes_the_connection(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    c.send(b"\x82\x08\x00\x01\x00\x03q/3\x03")
    assert c.expect_closed() == []


def test_unsubscribe_removes_the_binding(backend: Backend) -> None:
    c = backend.raw()
    cid = backend.cid("unsub")
    c.connect(cid)
    c.subscribe(("u/t", 1), ("u/keep", 1))
    c.unsubscribe("u/t")
    assert backend.bindings(backend.queue_name(cid, 1)) == [("amq.topic", "u.keep")]
    c.publish("u/t", b"gone", 1)
    c.publish("u/keep", b"kept", 1)
    assert c.recv_publish().payload == b"kept"
    c.expect_nothing()


def test_unsubscribe_of_unknown_filter_is_acknowledged(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    c.unsubscribe("never/subscribed")
    c.expect_open()


def test_resubscribing_at_another_qos_keeps_both_bindings(backend: Backend) -> None:
    c = backend.raw()
    cid = backend.cid("resub")
    c.connect(cid)
    assert c.subscribe(("r/t", 0)) == [0]
    assert c.subscribe(("r/t", 1)) == [1]
    assert backend.bindings(backend.queue_name(cid, 0)) == [("amq.topic", "r.t")]
    assert backend.bindings(backend.queue_name(cid, 1)) == [("amq.topic", "r.t")]
    c.publish("r/t", b"twice", 1)
    assert sorted(p.qos for p in c.publishes(2)) == [0, 1]
    c.unsubscribe("r/t")
    assert backend.bindings(backend.queue_name(cid, 0)) == []
    assert backend.bindings(backend.queue_name(cid, 1)) == []
    c.publish("r/t", b"none", 1)
    c.expect_nothing()


def test_duplicates_once_per_qos_level(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    assert c.subscribe(("a/b/c", 1), ("a/+/c", 0), ("a/#", 1)) == [1, 0, 1]
    backend.publish("amq.topic", "a.b.c", b"overlap")
    got = c.publishes(2)
    assert sorted((p.topic, p.payload, p.qos, p.retain, p.dup) for p in got) == [
        ("a/b/c", b"overlap", 0, False, False), ("a/b/c", b"overlap", 1, False, False)]
    c.expect_nothing()


MATCHES = [
    ("a/+", "a/b", True), ("a/+", "a", False), ("a/+", "a/b/c", False), ("a/+", "a/", True),
    ("a/#", "a", True), ("a/#", "a/b/c", True), ("a/#", "ab", False), ("+/x", "/x", True),
    ("+", "/", False), ("#", "/", True), ("+/+", "/", True), ("#", "$SYS/x", True), ("+/x", "$SYS/x", True),
    ("a/b", "a/b/", False), ("a.b", "a/b", True),
]


@pytest.mark.parametrize(("topic_filter", "topic", "matches"), MATCHES)
def test_wildcard_matching(backend: Backend, topic_filter: str, topic: str, matches: bool) -> None:
    c = backend.raw()
    c.connect()
    c.subscribe((topic_filter, 1), ("marker", 1))
    c.publish(topic, b"probe", 1)
    c.publish("marker", b"after", 1)
    # Both subscriptions feed the same queue, so everything before the marker has arrived with it.
    got = []
    while True:
        p = c.recv_publish()
        c.puback(p.packet_id)
        if p.topic == "marker":
            break
        got.append((p.topic, p.payload))
    assert got == ([(topic, b"probe")] if matches else [])


def test_amqp_publish_reaches_subscribers_by_qos(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    assert c.subscribe(("x/one", 1), ("x/zero", 0)) == [1, 0]
    # A plain AMQP message (no x-mqtt-publish-qos header) is delivered at the subscription's QoS.
    for dm in (1, 2):
        backend.publish("amq.topic", "x.one", b"dm%d" % dm, {"delivery_mode": dm})
        p = c.recv_publish()
        assert (p.topic, p.payload, p.qos, p.retain, p.dup) == ("x/one", b"dm%d" % dm, 1, False, False)
        c.puback(p.packet_id)
    backend.publish("amq.topic", "x.zero", b"to qos0")
    assert c.recv_publish() == Publish("x/zero", b"to qos0", 0, False, False, None)


def test_delivery_qos_is_the_minimum_of_publish_and_subscription(backend: Backend) -> None:
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    sub.subscribe(("m/one", 1), ("m/zero", 0))
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("m/one", b"qos0 to qos1 sub", 0)
    assert sub.recv_publish() == Publish("m/one", b"qos0 to qos1 sub", 0, False, False, None)
    pub.publish("m/zero", b"qos1 to qos0 sub", 1)
    assert sub.recv_publish() == Publish("m/zero", b"qos1 to qos0 sub", 0, False, False, None)
    pub.publish("m/one", b"qos1 to qos1 sub", 1)
    assert sub.recv_publish() == Publish("m/one", b"qos1 to qos1 sub", 1, False, False, 1)


def test_no_local_is_not_applied(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    c.subscribe(("self/t", 0))
    c.publish("self/t", b"echo")
    assert c.recv_publish() == Publish("self/t", b"echo", 0, False, False, None)


def test_amqp_routing_key_with_slash_or_star(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    c.subscribe(("k/#", 0), ("k/b/c", 0))
    assert backend.publish("amq.topic", "k/b/c", b"literal slash") is False  # one word, matches nothing
    assert backend.publish("amq.topic", "k.*.c", b"star")
    # A '*' in a routing key comes back as '+' in the MQTT topic.
    assert c.recv_publish() == Publish("k/+/c", b"star", 0, False, False, None)
    c.expect_nothing()


def test_other_exchanges_do_not_reach_mqtt(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    c.subscribe(("d/key", 0))
    assert backend.publish("amq.direct", "d.key", b"direct") is False
    assert backend.publish("amq.fanout", "d.key", b"fanout") is False
    c.expect_nothing()


def test_one_subscribe_with_several_filters_and_a_repeated_one(backend: Backend) -> None:
    c = backend.raw()
    cid = backend.cid("multi")
    c.connect(cid)
    assert c.subscribe(("mf/a", 0), ("mf/b", 1), ("mf/a", 1), ("mf/+", 2), ("mf/#", 0)) == [0, 1, 1, 1, 0]
    assert backend.bindings(backend.queue_name(cid, 0)) == [("amq.topic", "mf.#"), ("amq.topic", "mf.a")]
    assert backend.bindings(backend.queue_name(cid, 1)) == [("amq.topic", "mf.*"), ("amq.topic", "mf.a"),
                                                            ("amq.topic", "mf.b")]
    c.unsubscribe("mf/a", "mf/#", "mf/unknown")
    assert backend.bindings(backend.queue_name(cid, 0)) == []
    assert backend.bindings(backend.queue_name(cid, 1)) == [("amq.topic", "mf.*"), ("amq.topic", "mf.b")]


def test_prefetch_limits_only_qos1_deliveries(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    c.subscribe(("pf/t", 1), ("pf/#", 0))
    for i in range(12):
        backend.publish("amq.topic", "pf.t", b"%d" % i)
    got = c.publishes(22)
    assert sorted(p.qos for p in got) == [0] * 12 + [1] * 10
    c.expect_nothing()
