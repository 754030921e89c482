"""Publishing and subscribing: the amq.topic mapping, headers, QoS, subscription queues, retained messages,
cross-protocol delivery and the message log. Includes the flows of "RabbitMQ in Depth", chapter 9."""

from __future__ import annotations

import pytest

from fakebroker.protocols.mqtt.codec import (
    Puback,
    Publish,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)

# -- MQTT publish -> AMQP --------------------------------------------------------------------------------


def test_chapter_publish_lands_in_a_queue_bound_to_amq_topic(client, broker, protocol, transport):
    broker.declare_queue("mqtt-messages")
    broker.bind("mqtt-messages", "amq.topic", "#")
    client("mqtt-publisher").publish("mqtt/example", b"hello from paho", qos=1)
    msg = broker.get("mqtt-messages")
    assert msg is not None
    assert (msg.exchange, msg.routing_key, msg.body) == ("amq.topic", "mqtt.example", b"hello from paho")
    assert msg.properties["delivery_mode"] == 2
    assert msg.properties["headers"] == {"x-mqtt-publish-qos": 1, "x-mqtt-dup": False}
    assert set(msg.properties) == {"delivery_mode", "headers"}
    assert broker.get("mqtt-messages") is None


def test_qos0_publish_is_transient(client, broker, protocol, until):
    broker.declare_queue("tap")
    broker.bind("tap", "amq.topic", "#")
    client("p").publish("a/b", b"q0", qos=0)
    msg = until(lambda: broker.get("tap"), what="the QoS 0 message in the tap queue")
    assert msg.properties == {"delivery_mode": 1, "headers": {"x-mqtt-publish-qos": 0, "x-mqtt-dup": False}}


def test_dup_flag_becomes_header(raw, broker):
    broker.declare_queue("tap")
    broker.bind("tap", "amq.topic", "#")
    r = raw()
    r.connect(client_id="dup")
    r.send(Publish("a/b", b"again", 1, dup=True, packet_id=5))
    assert r.recv() == Puback(5)
    assert broker.get("tap").properties["headers"] == {"x-mqtt-publish-qos": 1, "x-mqtt-dup": True}


@pytest.mark.parametrize(
    ("topic", "key"),
    [
        ("mqtt/example", "mqtt.example"),
        ("a.b/c d", "a.b.c d"),  # dots are not escaped: they become level separators
        ("/leading/slash", ".leading.slash"),
        ("trailing/", "trailing."),
        ("j2//double", "j2..double"),
        ("j2/ü", "j2.ü"),
        ("$SYS/x", "$SYS.x"),
    ],
)
def test_topic_to_routing_key(raw, broker, topic, key):
    broker.declare_queue("tap")
    broker.bind("tap", "amq.topic", "#")
    r = raw()
    r.connect(client_id="t")
    r.send(Publish(topic, b"x", 1, packet_id=1))
    assert r.recv() == Puback(1)
    assert broker.get("tap").routing_key == key


def test_qos2_publish_gets_puback_and_is_routed_as_qos1(raw, broker):
    broker.declare_queue("tap")
    broker.bind("tap", "amq.topic", "#")
    r = raw()
    r.connect(client_id="q2")
    r.send(Publish("a/q2", b"two", 2, packet_id=9))
    assert r.recv() == Puback(9)  # not PUBREC
    msg = broker.get("tap")
    assert msg.properties == {"delivery_mode": 2, "headers": {"x-mqtt-publish-qos": 1, "x-mqtt-dup": False}}
    # An unsolicited PUBREL is ignored: no PUBCOMP, and the connection stays usable.
    r.send(Pubrel(9))
    r.send(Publish("a/q2", b"after", 1, packet_id=10))
    assert r.recv() == Puback(10)


def test_unroutable_qos1_publish_is_still_acked(raw, broker):
    r = raw()
    r.connect(client_id="nobody-listens")
    r.send(Publish("no/one", b"x", 1, packet_id=3))
    assert r.recv() == Puback(3)
    (logged,) = broker.messages
    assert logged.routed is False


@pytest.mark.fakebroker(exchange="mqtt.events", vhosts=("/",))
def test_configured_exchange(client, broker, protocol):
    broker.declare_exchange("mqtt.events", "topic", durable=True)
    sub = client("sub")
    sub.subscribe("x/y", 1)
    assert {(b.source, b.routing_key) for b in broker.bindings if b.destination == "mqtt-subscription-subqos1"} == {
        ("", "mqtt-subscription-subqos1"), ("mqtt.events", "x.y")}
    client("pub").publish("x/y", b"via mqtt.events", 1)
    assert sub.expect_one().payload == b"via mqtt.events"
    assert broker.messages[0].exchange == "mqtt.events"
    broker.publish("amq.topic", "x.y", b"not this exchange")
    broker.publish("mqtt.events", "x.y", b"from amqp")
    assert sub.expect_one().payload == b"from amqp"


# -- subscriptions ---------------------------------------------------------------------------------------


def test_chapter_facebook_subscriber_creates_its_queue(client, broker, protocol, transport):
    fb = client("facebook")
    assert fb.subscribe("image/#", 0) == [0]
    q = broker.queues["mqtt-subscription-facebookqos0"]
    assert (q.durable, q.auto_delete, q.exclusive, q.arguments, q.consumers) == (False, True, False, {}, 1)
    assert [(b.source, b.routing_key) for b in broker.bindings if b.destination == q.name] == [
        ("", q.name), ("amq.topic", "image.#")]
    assert fb.subscribe("image/new/+", 1) == [1]
    q1 = broker.queues["mqtt-subscription-facebookqos1"]
    assert (q1.durable, q1.auto_delete, q1.exclusive, q1.arguments) == (True, True, False, {})
    assert [b.routing_key for b in broker.bindings if b.destination == q1.name] == [q1.name, "image.new.*"]


def test_chapter_image_topics(client, protocol, transport):
    everything = client("all-images")
    everything.subscribe("image/#", 1)
    new_images = client("new-images")
    new_images.subscribe("image/new/+", 1)
    profiles = client("new-profiles")
    profiles.subscribe("image/new/profile", 1)
    publisher = client("image-publisher")
    publisher.publish("image/new/profile", b"profile.png", 1)
    publisher.publish("image/new/avatar", b"avatar.png", 1)
    publisher.publish("image/old/profile", b"old.png", 1)
    assert [(m.topic, m.payload, m.qos) for m in everything.expect(3)] == [
        ("image/new/profile", b"profile.png", 1), ("image/new/avatar", b"avatar.png", 1),
        ("image/old/profile", b"old.png", 1)]
    assert [m.payload for m in new_images.expect(2)] == [b"profile.png", b"avatar.png"]
    # The profile subscriber gets the one message; the marker shows nothing else was on its way before it.
    publisher.publish("image/new/profile", b"marker", 1)
    assert [m.payload for m in profiles.expect(2)] == [b"profile.png", b"marker"]


def test_suback_grants_as_rabbitmq(client, broker, protocol):
    c = client("grants")
    assert c.subscribe([("g/two", 2), ("g/one", 1), ("g/zero", 0)]) == [1, 1, 0]
    assert broker.clients.get("grants").subscriptions == {"g/two": 1, "g/one": 1, "g/zero": 0}


def test_subscription_filters_become_binding_keys(raw, broker):
    r = raw()
    r.connect(client_id="fb")
    r.send(Subscribe(1, [("fb/qos0/#", 0), ("fb/qos1/+", 1), ("a.b/c", 1), ("", 0)]))
    assert r.recv() == Suback(1, [0, 1, 1, 0])  # an empty filter is granted too, as in RabbitMQ
    keys = {(b.destination, b.routing_key) for b in broker.bindings if b.source == "amq.topic"}
    assert keys == {("mqtt-subscription-fbqos0", "fb.qos0.#"), ("mqtt-subscription-fbqos1", "fb.qos1.*"),
                    ("mqtt-subscription-fbqos1", "a.b.c"), ("mqtt-subscription-fbqos0", "")}


def test_connect_without_subscribe_creates_no_queue(client, broker):
    client("publisher-only")
    assert broker.queues == {}


def test_unsubscribe_removes_the_binding(client, broker, protocol, transport):
    c = client("unsub")
    c.subscribe([("u/a", 1), ("u/b", 0)])
    c.unsubscribe("u/a")
    assert [b.routing_key for b in broker.bindings if b.source == "amq.topic"] == ["u.b"]
    assert broker.clients.get("unsub").subscriptions == {"u/b": 0}
    p = client("p")
    p.publish("u/a", b"gone", 1)
    p.publish("u/b", b"marker", 1)
    assert [m.payload for m in c.expect(1)] == [b"marker"]
    c.unsubscribe("never/subscribed")  # still an UNSUBACK


def test_unsubscribe_over_raw_socket(raw, broker):
    r = raw()
    r.connect(client_id="ru")
    r.send(Subscribe(1, [("x/#", 1)]))
    r.recv()
    r.send(Unsubscribe(2, ["x/#", "not/there"]))
    assert r.recv() == Unsuback(2)
    assert not [b for b in broker.bindings if b.source == "amq.topic"]


def test_delivery_qos_is_min_of_publish_and_subscription(client, protocol, transport):
    q1 = client("sub-q1")
    q1.subscribe("d/q1", 1)
    q0 = client("sub-q0")
    q0.subscribe("d/q0", 0)
    p = client("pub")
    p.publish("d/q1", b"published qos0", 0)
    p.publish("d/q1", b"published qos1", 1)
    p.publish("d/q0", b"published qos1 to a qos0 sub", 1)
    assert [(m.payload, m.qos, m.retain, m.dup) for m in q1.expect(2)] == [
        (b"published qos0", 0, False, False), (b"published qos1", 1, False, False)]
    assert [(m.payload, m.qos) for m in q0.expect(1)] == [(b"published qos1 to a qos0 sub", 0)]


def test_overlapping_subscriptions_of_two_qos_levels_deliver_twice(client, broker, protocol):
    c = client("overlap")
    c.subscribe([("a/b/c", 1), ("a/+/c", 0), ("a/#", 1)])
    broker.publish("amq.topic", "a.b.c", b"x")
    got = sorted((m.topic, m.qos) for m in c.expect(2))
    assert got == [("a/b/c", 0), ("a/b/c", 1)]


def test_resubscribing_at_another_qos_keeps_both_bindings(client, broker):
    c = client("resub")
    for qos in (0, 1, 0):
        assert c.subscribe("re/sub", qos) == [qos]
    assert sorted(b.destination for b in broker.bindings if b.source == "amq.topic") == [
        "mqtt-subscription-resubqos0", "mqtt-subscription-resubqos1"]
    client("p").publish("re/sub", b"twice", 1)
    assert sorted(m.qos for m in c.expect(2)) == [0, 1]
    c.unsubscribe("re/sub")
    assert [b for b in broker.bindings if b.source == "amq.topic"] == []


def test_a_client_receives_its_own_publications(client, protocol):
    c = client("echo")
    c.subscribe("echo/#", 1)
    c.publish("echo/me", b"mine", 1)
    assert c.expect_one().payload == b"mine"


def test_packet_ids_of_deliveries_start_at_1(raw, broker):
    r = raw()
    r.connect(client_id="ids")
    r.send(Subscribe(7, [("ids/#", 1)]))
    r.recv()
    for i in range(3):
        broker.publish("amq.topic", "ids.x", f"m{i}".encode())
    got = [r.recv_publish() for _ in range(3)]
    assert [(p.packet_id, p.payload, p.qos) for p in got] == [(1, b"m0", 1), (2, b"m1", 1), (3, b"m2", 1)]


def test_prefetch_bounds_unacked_qos1_deliveries(raw, broker):
    r = raw()
    r.connect(client_id="slow")
    r.send(Subscribe(1, [("win/#", 1)]))
    r.recv()
    for i in range(15):
        broker.publish("amq.topic", "win.t", f"m{i}".encode())
    got = [r.recv_publish() for _ in range(10)]
    assert [p.payload for p in got] == [f"m{i}".encode() for i in range(10)]
    q = broker.queues["mqtt-subscription-slowqos1"]
    assert (q.messages, q.unacked) == (5, 10)
    r.send(Puback(got[0].packet_id))
    assert r.recv_publish().payload == b"m10"
    q = broker.queues["mqtt-subscription-slowqos1"]
    assert (q.messages, q.unacked) == (4, 10)
    assert broker.clients.get("slow").inflight == 10


@pytest.mark.fakebroker(prefetch=2)
def test_prefetch_option(raw, broker):
    r = raw()
    r.connect(client_id="p2")
    r.send(Subscribe(1, [("w/#", 1)]))
    r.recv()
    for i in range(5):
        broker.publish("amq.topic", "w.t", f"m{i}".encode())
    first, second = r.recv_publish(), r.recv_publish()
    q = broker.queues["mqtt-subscription-p2qos1"]
    assert (q.messages, q.unacked) == (3, 2)
    r.send(Puback(second.packet_id))
    r.send(Puback(first.packet_id))
    assert [r.recv_publish().payload for _ in range(2)] == [b"m2", b"m3"]


def test_dup_publish_is_not_delivered_at_qos0(raw, client, broker):
    # RabbitMQ 3.10 drops a message flagged as a duplicate (x-mqtt-dup) rather than deliver it at most once twice.
    q0 = client("q0-sub")
    q0.subscribe("dup/t", 0)
    q1 = client("q1-sub")
    q1.subscribe("dup/t", 1)
    r = raw()
    r.connect(client_id="dup-pub")
    r.send(Publish("dup/t", b"retry", 1, dup=True, packet_id=7))
    assert r.recv() == Puback(7)
    r.send(Publish("dup/t", b"fresh", 1, packet_id=8))
    assert r.recv() == Puback(8)
    assert [(m.payload, m.dup) for m in q1.expect(2)] == [(b"retry", True), (b"fresh", False)]
    assert [m.payload for m in q0.expect(1)] == [b"fresh"]


# -- cross-protocol --------------------------------------------------------------------------------------


def test_amqp_publish_reaches_mqtt_subscribers(client, broker, protocol, transport):
    exact = client("exact")
    exact.subscribe("a/b", 1)
    plus = client("plus")
    plus.subscribe("a/+", 1)
    hash_ = client("hash")
    hash_.subscribe("a/#", 0)
    logged = broker.publish("amq.topic", "a.b", b"from amqp", properties={"delivery_mode": 1})
    assert sorted(logged.queues) == ["mqtt-subscription-exactqos1", "mqtt-subscription-hashqos0",
                                     "mqtt-subscription-plusqos1"]
    for c, qos in ((exact, 1), (plus, 1), (hash_, 0)):
        m = c.expect_one()
        assert (m.topic, m.payload, m.qos, m.retain, m.dup) == ("a/b", b"from amqp", qos, False, False)


def test_amqp_routing_key_with_slash_does_not_match(client, broker):
    c = client("slash")
    c.subscribe("a/b/c", 1)
    broker.publish("amq.topic", "a/b/c", b"literal slashes")
    broker.publish("amq.direct", "a.b.c", b"other exchange")
    broker.publish("amq.topic", "a.b.c", b"marker")
    assert [m.payload for m in c.expect(1)] == [b"marker"]


@pytest.mark.parametrize(("header", "qos"), [(0, 0), (1, 1), (2, 1)])
def test_int_typed_publish_qos_header_is_honoured(client, broker, header, qos):
    # RabbitMQ 3.10 crashes the subscriber's connection on a non-byte x-mqtt-publish-qos; fakebroker uses it.
    c = client("intqos")
    c.subscribe("i/q", 1)
    broker.publish("amq.topic", "i.q", b"x", properties={"headers": {"x-mqtt-publish-qos": header}})
    assert c.expect_one().qos == qos
    assert broker.clients.get("intqos") is not None


def test_wildcards_match_dollar_topics(client):
    # Unlike the MQTT spec's $-rule, and like RabbitMQ 3.10 (an AMQP topic exchange has no such rule).
    c = client("dollar")
    c.subscribe([("#", 0), ("+/x", 1)])
    client("p").publish("$SYS/x", b"dollar", 1)
    assert sorted((m.topic, m.qos) for m in c.expect(2)) == [("$SYS/x", 0), ("$SYS/x", 1)]


def test_dot_in_mqtt_topic_reaches_slash_subscriber(client):
    c = client("dots")
    c.subscribe("a/b", 1)
    client("p").publish("a.b", b"dotted", 1)
    m = c.expect_one()
    assert (m.topic, m.payload) == ("a/b", b"dotted")


# -- retained messages ------------------------------------------------------------------------------------


def test_retained_exact_topic_only(client, broker, protocol, transport):
    live = client("live")
    live.subscribe("ret/t", 1)
    p = client("retainer")
    p.publish("ret/t", b"kept", 1, retain=True)
    assert (live.expect_one().retain) is False  # live deliveries never carry retain
    assert broker.retained() == {"ret/t": b"kept"}
    late = client("late")
    late.subscribe([("ret/#", 1), ("ret/+", 1), ("ret/t", 1)])
    m = late.expect_one()
    assert (m.topic, m.payload, m.qos, m.retain) == ("ret/t", b"kept", 1, True)
    p.publish("ret/t", b"marker", 1)
    # One queue per QoS level: the marker comes once, and no retained copy came for the wildcard filters.
    assert [m.payload for m in late.expect(1)] == [b"marker"]


def test_retained_qos_is_min_of_subscription_and_message(client):
    p = client("p")
    p.publish("r/q", b"qos1 retained", 1, retain=True)
    c = client("q0sub")
    c.subscribe("r/q", 0)
    m = c.expect_one()
    assert (m.qos, m.retain) == (0, True)
    p.publish("r/q0", b"qos0 retained", 0, retain=True)
    p.publish("unrelated", b"", 1)  # PUBACKed once the broker has handled the QoS 0 publish before it
    c.subscribe("r/q0", 1)
    m = c.expect_one()
    assert (m.payload, m.qos, m.retain) == (b"qos0 retained", 0, True)


def test_retained_overwrite_keep_and_clear(client, broker):
    p = client("p")
    p.publish("r/x", b"v1", 1, retain=True)
    p.publish("r/x", b"v2", 1, retain=True)
    p.publish("r/x", b"not retained", 1)
    assert broker.retained() == {"r/x": b"v2"}
    live = client("live")
    live.subscribe("r/x", 1)
    assert live.expect_one().payload == b"v2"
    p.publish("r/x", b"", 1, retain=True)
    m = live.expect_one()
    assert (m.payload, m.retain) == (b"", False)  # the clearing publish is routed too
    assert broker.retained() == {}
    late = client("late")
    late.subscribe("r/x", 1)
    p.publish("r/x", b"marker", 1)
    assert [m.payload for m in late.expect(1)] == [b"marker"]


def test_amqp_publish_is_never_retained(client, broker):
    broker.publish("amq.topic", "r.amqp", b"x")
    assert broker.retained() == {}


@pytest.mark.fakebroker(vhosts=("/", "other"), users={"guest": "guest"})
def test_retained_store_is_per_vhost(client, broker):
    client("p").publish("r/v", b"root only", 1, retain=True)
    assert broker.retained(vhost="other") == {}
    other = client("o", username="other:guest", password="guest")
    other.subscribe("r/v", 1)
    client("p2", username="other:guest", password="guest").publish("r/v", b"marker", 1)
    assert [m.payload for m in other.expect(1)] == [b"marker"]


def test_retained_with_dotted_topic_shares_the_slash_slot(client, broker):
    client("p").publish("a.b", b"dotted", 1, retain=True)
    assert broker.retained() == {"a/b": b"dotted"}
    c = client("c")
    c.subscribe("a/b", 1)
    m = c.expect_one()
    assert (m.topic, m.payload, m.retain) == ("a/b", b"dotted", True)


# -- inspection --------------------------------------------------------------------------------------------


def test_message_log_names_the_publishing_client(client, broker, protocol, transport):
    sub = client("reader")
    sub.subscribe("log/#", 1)
    client("writer").publish("log/x", b"entry", 1)
    sub.expect_one()
    (logged,) = broker.messages.filter(topic="log/#")
    assert (logged.protocol, logged.client_id, logged.routing_key, logged.topic) == ("mqtt", "writer", "log.x",
                                                                                      "log/x")
    assert logged.deliveries == [("mqtt-subscription-readerqos1", "reader")]
    assert len(broker.messages.filter(client_id="writer", delivered_to="reader")) == 1


@pytest.mark.fakebroker(clock="wall")
def test_ttl_zero_reaches_subscribers_on_the_wall_clock(client, broker, transport):
    # Delivered on arrival to consumers that can take it (RabbitMQ 3.10), though real time has moved on
    # between the publish and the delivery.
    s0, s1 = client("s0"), client("s1")
    s0.subscribe("ttl/#", 0)
    s1.subscribe("ttl/#", 1)
    broker.publish("amq.topic", "ttl.zero", b"ttl 0", {"expiration": "0"})
    broker.declare_queue("ttl0", arguments={"x-message-ttl": 0})
    broker.bind("ttl0", "amq.topic", "ttl.#")
    broker.publish("amq.topic", "ttl.queue", b"to the queue too")
    assert [(m.payload, m.qos) for m in s0.expect(2)] == [(b"ttl 0", 0), (b"to the queue too", 0)]
    assert [(m.payload, m.qos) for m in s1.expect(2)] == [(b"ttl 0", 1), (b"to the queue too", 1)]
    assert broker.get("ttl0") is None  # no consumer there: expired on arrival
