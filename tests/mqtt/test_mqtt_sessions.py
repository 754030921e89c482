"""Clean and persistent sessions: queue lifetimes, subscription_ttl on the clock, resumption and redelivery."""

from __future__ import annotations

import time

import pytest

import fakebroker as fb
from fakebroker.protocols.mqtt.codec import Connack, Disconnect, Puback, Subscribe, Unsuback, Unsubscribe, Will

DAY_MS = 86_400_000


def test_clean_session_queues_go_with_the_connection(client, broker, protocol, transport, gone):
    c = client("clean")
    c.subscribe([("c/0", 0), ("c/1", 1)])
    q = broker.queues
    assert (q["mqtt-subscription-cleanqos1"].durable, q["mqtt-subscription-cleanqos1"].auto_delete) == (True, True)
    c.disconnect()
    assert broker.queues == {}
    assert [b for b in broker.bindings if b.source == "amq.topic"] == []


def test_clean_session_queues_go_on_abrupt_close_too(client, broker, gone):
    c = client("clean-abrupt")
    c.subscribe([("c/0", 0), ("c/1", 1)])
    broker.disconnect("clean-abrupt")
    gone("clean-abrupt")
    assert broker.queues == {}


def test_persistent_session_keeps_the_qos1_queue_only(client, broker, protocol, transport):
    c = client("persist", clean_session=False)
    c.subscribe([("p/0", 0), ("p/1", 1)])
    q0 = broker.queues["mqtt-subscription-persistqos0"]
    assert (q0.durable, q0.auto_delete, q0.arguments) == (False, True, {})
    q1 = broker.queues["mqtt-subscription-persistqos1"]
    assert (q1.durable, q1.auto_delete, q1.exclusive, q1.arguments) == (True, False, False, {"x-expires": DAY_MS})
    c.disconnect()
    assert list(broker.queues) == ["mqtt-subscription-persistqos1"]
    assert [(b.destination, b.routing_key) for b in broker.bindings if b.source == "amq.topic"] == [
        ("mqtt-subscription-persistqos1", "p.1")]
    # The queue keeps collecting while the client is away; QoS 0 subscriptions are lost.
    pub = client("pub")
    pub.publish("p/1", b"offline 1", 0)
    pub.publish("p/0", b"lost", 1)
    pub.publish("p/1", b"offline 2", 1)  # PUBACKed: the broker has handled everything before it
    assert broker.queues["mqtt-subscription-persistqos1"].messages == 2
    back = client("persist", clean_session=False, connect=False)
    session_present, rc = back.connect()
    assert session_present is True
    assert [(m.topic, m.payload, m.qos, m.dup) for m in back.expect(2)] == [
        ("p/1", b"offline 1", 0, False), ("p/1", b"offline 2", 1, False)]
    assert broker.clients.get("persist").subscriptions == {"p/1": 1}
    pub.publish("p/1", b"live again", 1)
    assert back.expect_one().payload == b"live again"


@pytest.mark.parametrize("ttl", [5000, DAY_MS])
def test_subscription_ttl_expires_on_the_clock(client, ttl):
    with fb.start(subscription_ttl=ttl) as broker:
        c = client("ttl", clean_session=False, broker=broker)
        c.subscribe("ttl/t", 1)
        assert broker.queues["mqtt-subscription-ttlqos1"].arguments == {"x-expires": ttl}
        c.disconnect()
        broker.publish("amq.topic", "ttl.t", b"kept while away")
        broker.clock.advance((ttl - 1) / 1000)
        q = broker.queues.get("mqtt-subscription-ttlqos1")
        assert q is not None and q.messages == 1
        broker.clock.advance(2 / 1000)
        assert "mqtt-subscription-ttlqos1" not in broker.queues
        again = client("ttl", clean_session=False, broker=broker, connect=False)
        assert again.connect()[0] is False  # no session present
        again.stop()


@pytest.mark.fakebroker(subscription_ttl=50)
def test_subscription_ttl_ignores_real_time(client, broker):
    c = client("realtime", clean_session=False)
    c.subscribe("r/t", 1)
    c.disconnect()
    time.sleep(0.3)  # six times the TTL of real time passes; the virtual clock does not move
    assert "mqtt-subscription-realtimeqos1" in broker.queues
    broker.clock.advance(0.049)
    assert "mqtt-subscription-realtimeqos1" in broker.queues
    broker.clock.advance(0.002)
    assert "mqtt-subscription-realtimeqos1" not in broker.queues


@pytest.mark.fakebroker(subscription_ttl=1000)
def test_reconnecting_resets_the_expiry(client, broker):
    c = client("again", clean_session=False)
    c.subscribe("a/t", 1)
    c.disconnect()
    broker.clock.advance(0.9)
    c2 = client("again", clean_session=False)
    broker.clock.advance(5)  # a connected session never expires
    assert "mqtt-subscription-againqos1" in broker.queues
    c2.disconnect()
    broker.clock.advance(0.999)
    assert "mqtt-subscription-againqos1" in broker.queues
    broker.clock.advance(0.002)
    assert broker.queues == {}


@pytest.mark.fakebroker(subscription_ttl=None)
def test_subscription_ttl_none_means_no_expiry(client, broker):
    c = client("forever", clean_session=False)
    c.subscribe("f/t", 1)
    assert broker.queues["mqtt-subscription-foreverqos1"].arguments == {}
    c.disconnect()
    broker.clock.advance(10 * DAY_MS / 1000)
    assert "mqtt-subscription-foreverqos1" in broker.queues


def test_default_subscription_ttl_is_a_day(client, broker):
    c = client("day", clean_session=False)
    c.subscribe("d/t", 1)
    c.disconnect()
    broker.clock.advance(DAY_MS / 1000 - 0.001)
    assert "mqtt-subscription-dayqos1" in broker.queues
    broker.clock.advance(0.002)
    assert broker.queues == {}


def test_unacked_messages_are_redelivered_with_dup_on_resumption(raw, broker, level):
    name = "MQIsdp" if level == 3 else "MQTT"
    r = raw()
    r.connect(client_id="redeliver", clean_session=False, protocol_level=level, protocol_name=name)
    r.send(Subscribe(1, [("rd/#", 1)]))
    r.recv()
    for i in range(4):
        broker.publish("amq.topic", "rd.t", f"m{i}".encode())
    got = [r.recv_publish() for _ in range(4)]
    assert [(p.packet_id, p.dup) for p in got] == [(1, False), (2, False), (3, False), (4, False)]
    r.send(Puback(2))  # only m1 is acknowledged
    r.send(Subscribe(2, [("marker/#", 0)]))  # ...and processed before the socket goes
    r.recv()
    r.close()
    r2 = raw()
    assert r2.connect(client_id="redeliver", clean_session=False, protocol_level=level, protocol_name=name) == (
        Connack(True, 0))
    again = [r2.recv_publish() for _ in range(3)]
    assert [(p.payload, p.dup, p.qos, p.packet_id) for p in again] == [
        (b"m0", True, 1, 1), (b"m2", True, 1, 2), (b"m3", True, 1, 3)]


def test_resumed_session_cannot_unsubscribe_an_earlier_subscription(raw, broker):
    # RabbitMQ 3.10 keeps a connection's filters in the connection: after resuming, UNSUBSCRIBE of a filter
    # subscribed on an earlier connection is acknowledged but leaves its binding (and its messages) in place.
    r = raw()
    r.connect(client_id="sticky", clean_session=False)
    r.send(Subscribe(1, [("s/t", 1)]))
    r.recv()
    r.send(Disconnect())
    r.closed()
    r2 = raw()
    assert r2.connect(client_id="sticky", clean_session=False).session_present
    r2.send(Unsubscribe(2, ["s/t"]))
    assert r2.recv() == Unsuback(2)
    assert [b.routing_key for b in broker.bindings if b.source == "amq.topic"] == ["s.t"]
    broker.publish("amq.topic", "s.t", b"still subscribed")
    assert r2.recv_publish().payload == b"still subscribed"
    # Subscribing again on this connection makes the filter this connection's own: now it can go.
    r2.send(Subscribe(3, [("s/t", 1)]))
    r2.recv()
    r2.send(Unsubscribe(4, ["s/t"]))
    assert r2.recv() == Unsuback(4)
    assert [b for b in broker.bindings if b.source == "amq.topic"] == []


def test_deleting_a_subscription_queue_closes_the_connection_without_will(raw, client, broker):
    watcher = client("watcher")
    watcher.subscribe("will/#", 1)
    r = raw()
    r.connect(client_id="victim", will=Will("will/victim", b"x", 1))
    r.send(Subscribe(1, [("v/t", 1)]))
    r.recv()
    broker.delete_queue("mqtt-subscription-victimqos1")
    assert r.closed() == []
    assert len(broker.messages.filter(protocol="mqtt-will")) == 0
    assert broker.clients.get("victim") is None
