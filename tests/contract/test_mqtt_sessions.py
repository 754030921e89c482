"""Clean and persistent sessions, subscription_ttl, the in-flight window, redelivery."""

from __future__ import annotations

from typing import Any

import pytest
from contractlib import Backend, wait_until

from fakebroker.protocols.mqtt.codec import Connack, Connect, Publish, Will

INEQUIVALENT_QUEUE = "mqtt-a-persistent-session-resumes-from-an-inequivalent-queue"


def test_persistent_session_keeps_qos1_and_loses_qos0(backend: Backend) -> None:
    cid = backend.cid("fb")
    c = backend.raw()
    assert c.connect(cid, clean_session=False) == Connack(False, 0)
    c.subscribe(("fb/qos0/#", 0), ("fb/qos1/+", 1))
    c.disconnect()
    q0, q1 = backend.queue_name(cid, 0), backend.queue_name(cid, 1)
    # Queues go when the connection's channel has closed, a moment after the socket on RabbitMQ.
    wait_until(lambda: list(backend.queues()) == [q1], what="only the qos1 queue to stay")
    assert backend.bindings(q1) == [("amq.topic", "fb.qos1.*")]
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("fb/qos1/x", b"kept", 1)
    pub.publish("fb/qos0/x", b"lost", 1)
    pub.publish("fb/qos1/y", b"kept at qos0", 0)
    again = backend.raw()
    assert again.connect(cid, clean_session=False) == Connack(True, 0)
    got = again.publishes(2)
    assert got == [Publish("fb/qos1/x", b"kept", 1, False, False, 1),
                   Publish("fb/qos1/y", b"kept at qos0", 0, False, False, None)]
    again.expect_nothing()
    assert q0 not in backend.queues()


def test_clean_disconnect_deletes_both_queues(backend: Backend) -> None:
    c = backend.raw()
    c.connect(backend.cid("clean"))
    c.subscribe(("c/0", 0), ("c/1", 1))
    assert len(backend.queues()) == 2
    c.disconnect()
    wait_until(lambda: backend.queues() == {}, what="the clean session's queues to go")


def test_abrupt_close_of_a_clean_session_deletes_its_queues(backend: Backend) -> None:
    cid = backend.cid("clean-abrupt")
    c = backend.raw()
    c.connect(cid)
    c.subscribe(("c/0", 0), ("c/1", 1))
    backend.disconnect(cid)
    wait_until(lambda: backend.queues() == {}, what="the clean session's queues to go")


def test_clean_session_discards_the_persistent_one(backend: Backend) -> None:
    cid = backend.cid("switch")
    c = backend.raw()
    c.connect(cid, clean_session=False)
    c.subscribe(("s/t", 1))
    c.disconnect()
    clean = backend.raw()
    assert clean.connect(cid, clean_session=True) == Connack(False, 0)
    assert backend.queues() == {}
    clean.disconnect()
    again = backend.raw()
    assert again.connect(cid, clean_session=False) == Connack(False, 0)


def test_persistent_session_without_subscriptions_is_not_present(backend: Backend) -> None:
    cid = backend.cid("nosubs")
    c = backend.raw()
    c.connect(cid, clean_session=False)
    c.disconnect()
    again = backend.raw()
    assert again.connect(cid, clean_session=False) == Connack(False, 0)


def test_persistent_session_with_only_qos0_subscriptions_is_not_present(backend: Backend) -> None:
    cid = backend.cid("q0only")
    c = backend.raw()
    c.connect(cid, clean_session=False)
    c.subscribe(("z/t", 0))
    c.disconnect()
    again = backend.raw()
    assert again.connect(cid, clean_session=False) == Connack(False, 0)


def test_subscription_ttl_expires_the_session(backend: Backend) -> None:
    cid = backend.cid("ttl")
    c = backend.raw()
    c.connect(cid, clean_session=False)
    c.subscribe(("ttl/t", 1))
    q1 = backend.queue_name(cid, 1)
    assert backend.queue(q1).arguments == {"x-expires": 5000}  # type: ignore[union-attr]
    c.disconnect()
    backend.advance(1.0)
    assert q1 in backend.queues()  # the timer starts when the consumer goes
    backend.advance(4.5)
    wait_until(lambda: q1 not in backend.queues(), timeout=2.0, what=f"{q1} to expire")
    again = backend.raw()
    assert again.connect(cid, clean_session=False) == Connack(False, 0)


def test_connected_persistent_session_does_not_expire(backend: Backend) -> None:
    cid = backend.cid("ttl-live")
    c = backend.raw()
    c.connect(cid, clean_session=False, keepalive=0)
    c.subscribe(("live/t", 1))
    backend.advance(5.5)
    assert backend.queue_name(cid, 1) in backend.queues()
    backend.publish("amq.topic", "live.t", b"still here")
    assert c.recv_publish().payload == b"still here"


def test_inflight_window_is_10(backend: Backend) -> None:
    sub = backend.raw()
    sub.connect(backend.cid("slow"))
    sub.subscribe(("win/t", 1))
    for i in range(15):
        backend.publish("amq.topic", "win.t", b"%d" % i)
    got = sub.publishes(10)
    assert [p.payload for p in got] == [b"%d" % i for i in range(10)]
    sub.expect_nothing()
    sub.puback(got[0].packet_id)
    sub.puback(got[1].packet_id)
    assert [p.payload for p in sub.publishes(2)] == [b"10", b"11"]
    sub.expect_nothing()


def test_unacked_messages_are_redelivered_with_dup_on_resume(backend: Backend) -> None:
    cid = backend.cid("redeliver")
    sub = backend.raw()
    sub.connect(cid, clean_session=False)
    sub.subscribe(("rd/t", 1))
    for i in range(3):
        backend.publish("amq.topic", "rd.t", b"m%d" % i)
    first = sub.publishes(3)
    assert [(p.payload, p.dup, p.packet_id) for p in first] == [(b"m0", False, 1), (b"m1", False, 2),
                                                                 (b"m2", False, 3)]
    sub.puback(2)
    sub.disconnect()
    again = backend.raw()
    assert again.connect(cid, clean_session=False) == Connack(True, 0)
    assert again.publishes(2) == [Publish("rd/t", b"m0", 1, False, True, 1), Publish("rd/t", b"m2", 1, False, True, 2)]
    again.expect_nothing()


def test_unacked_messages_of_a_clean_session_are_not_redelivered(backend: Backend) -> None:
    cid = backend.cid("gone")
    sub = backend.raw()
    sub.connect(cid)
    sub.subscribe(("gone/t", 1))
    backend.publish("amq.topic", "gone.t", b"unacked")
    assert sub.recv_publish().payload == b"unacked"
    sub.disconnect()
    again = backend.raw()
    assert again.connect(cid) == Connack(False, 0)
    again.subscribe(("gone/t", 1))
    again.expect_nothing()


def test_resumed_session_cannot_unsubscribe_older_filters(backend: Backend) -> None:
    # RabbitMQ 3.10 keeps a connection's filters in the connection: after a resume, UNSUBSCRIBE of a filter
    # subscribed on an earlier connection is acknowledged but leaves the binding in place.
    cid = backend.cid("resume-unsub")
    c = backend.raw()
    c.connect(cid, clean_session=False)
    c.subscribe(("old/t", 1))
    c.disconnect()
    again = backend.raw()
    again.connect(cid, clean_session=False)
    again.unsubscribe("old/t")
    assert backend.bindings(backend.queue_name(cid, 1)) == [("amq.topic", "old.t")]
    backend.publish("amq.topic", "old.t", b"still bound")
    assert again.recv_publish().payload == b"still bound"


def test_paho_persistent_session_round_trip(backend: Backend) -> None:
    sub = backend.paho("sub", clean_session=False)
    assert sub.connect() == (False, 0)
    assert sub.subscribe("pp/#", 1) == [1]
    sub.disconnect()
    pub = backend.paho("pub")
    pub.connect()
    for i in range(3):
        pub.publish("pp/t", b"offline %d" % i, 1)
    again = backend.paho("sub", clean_session=False)
    assert again.connect() == (True, 0)
    got = again.wait_messages(3)
    assert [(m.topic, m.payload, m.qos) for m in got] == [("pp/t", b"offline %d" % i, 1) for i in range(3)]


def test_deleting_a_subscription_queue_closes_the_connection_without_will(backend: Backend) -> None:
    watcher = backend.watcher(("will/#", 1))
    cid = backend.cid("victim")
    c = backend.raw()
    c.connect(cid, will=Will("will/victim", b"never", 1, False))
    c.subscribe(("v/t", 1))
    backend.delete_queue(backend.queue_name(cid, 1))  # an operator removes it under the consumer
    assert c.expect_closed() == []
    watcher.expect_nothing()


def test_clean_session_deletes_a_preexisting_queue_of_its_name(backend: Backend) -> None:
    cid = backend.cid("pre-clean")
    q1 = backend.queue_name(cid, 1)
    backend.declare_queue(q1, durable=True, auto_delete=True)
    backend.bind(q1, "amq.topic", "pre.bound")
    backend.publish("amq.topic", "pre.bound", b"waiting")
    c = backend.raw()
    assert c.connect(cid) == Connack(False, 0)
    assert q1 not in backend.queues()
    assert c.subscribe(("pre/other", 1)) == [1]
    assert backend.bindings(q1) == [("amq.topic", "pre.other")]
    c.expect_nothing()


def test_persistent_session_adopts_a_preexisting_queue(backend: Backend) -> None:
    cid = backend.cid("pre-persistent")
    q1 = backend.queue_name(cid, 1)
    backend.declare_queue(q1, durable=True, arguments={"x-expires": 5000})
    backend.bind(q1, "amq.topic", "pre.bound")
    backend.publish("amq.topic", "pre.bound", b"waiting")
    c = backend.raw()
    assert c.connect(cid, clean_session=False) == Connack(True, 0)
    assert c.recv_publish() == Publish("pre/bound", b"waiting", 1, False, False, 1)


@pytest.mark.difference(INEQUIVALENT_QUEUE)
@pytest.mark.parametrize("flags", [{"durable": False}, {"durable": True}, {"durable": True, "auto_delete": True},
                                   {"durable": True, "arguments": {"x-expires": 60000}}],
                         ids=["transient", "no-x-expires", "auto-delete", "other-x-expires"])
def test_persistent_session_over_an_inequivalent_queue(backend: Backend, flags: dict[str, Any]) -> None:
    cid = backend.cid("pre-clash")
    q1 = backend.queue_name(cid, 1)
    backend.declare_queue(q1, **flags)
    backend.bind(q1, "amq.topic", "clash.t")
    backend.publish("amq.topic", "clash.t", b"waiting")
    c = backend.raw()
    c.send(Connect(client_id=cid, clean_session=False, username=backend.username, password=backend.password))
    if backend.is_fake:
        # fakebroker resumes the session from the queue it finds.
        assert c.recv() == Connack(True, 0)
        assert c.recv_publish() == Publish("clash/t", b"waiting", 1, False, False, 1)
    else:
        # RabbitMQ re-declares the queue with the session's flags: PRECONDITION_FAILED crashes the connection.
        assert c.expect_closed() == []
        assert backend.queue(q1) is not None


@pytest.mark.difference(INEQUIVALENT_QUEUE)
def test_persistent_session_taking_over_a_clean_one(backend: Backend) -> None:
    cid = backend.cid("clean-then-persistent")
    old = backend.raw()
    old.connect(cid)
    old.subscribe(("t/q1", 1))  # the clean session's QoS 1 queue: durable, auto-delete
    new = backend.raw()
    new.send(Connect(client_id=cid, clean_session=False, username=backend.username, password=backend.password))
    if backend.is_fake:
        # The old connection goes first, and its auto-delete queue with it: a fresh session.
        assert new.recv() == Connack(False, 0)
        assert old.expect_closed() == []
        new.expect_open()
    else:
        # The old connection's queue is still there when the new one declares it: both connections die.
        assert new.expect_closed() == []
        assert old.expect_closed() == []


def test_session_without_bindings_is_still_present(backend: Backend) -> None:
    cid = backend.cid("unbound")
    c = backend.raw()
    c.connect(cid, clean_session=False)
    c.subscribe(("ub/t", 1))
    c.unsubscribe("ub/t")
    c.disconnect()
    again = backend.raw()
    assert again.connect(cid, clean_session=False) == Connack(True, 0)
    assert backend.bindings(backend.queue_name(cid, 1)) == []


def test_message_ttl_applies_to_offline_sessions(backend: Backend) -> None:
    cid = backend.cid("ttl-msg")
    c = backend.raw()
    c.connect(cid, clean_session=False)
    c.subscribe(("exp/#", 1))
    c.disconnect()
    backend.publish("amq.topic", "exp.short", b"expires", {"expiration": "200"})
    backend.publish("amq.topic", "exp.long", b"stays", {"expiration": "60000"})
    backend.advance(0.5)
    again = backend.raw()
    assert again.connect(cid, clean_session=False) == Connack(True, 0)
    assert again.recv_publish() == Publish("exp/long", b"stays", 1, False, False, 1)
    again.expect_nothing()


def test_takeover_hands_unacked_messages_to_the_new_connection(backend: Backend) -> None:
    cid = backend.cid("handover")
    old = backend.raw()
    old.connect(cid, clean_session=False)
    old.subscribe(("ho/t", 1))
    backend.publish("amq.topic", "ho.t", b"unacked")
    assert old.recv_publish().payload == b"unacked"
    new = backend.raw()
    assert new.connect(cid, clean_session=False) == Connack(True, 0)
    old.expect_closed()
    assert new.recv_publish() == Publish("ho/t", b"unacked", 1, False, True, 1)


def test_resumed_session_unsubscribes_what_it_subscribed_itself(backend: Backend) -> None:
    cid = backend.cid("resume-mixed")
    c = backend.raw()
    c.connect(cid, clean_session=False)
    c.subscribe(("mix/t", 1))
    c.disconnect()
    again = backend.raw()
    again.connect(cid, clean_session=False)
    assert again.subscribe(("mix/t", 0)) == [0]
    again.unsubscribe("mix/t")
    # Only the QoS 0 binding made on this connection goes; the resumed QoS 1 one stays.
    assert backend.bindings(backend.queue_name(cid, 0)) == []
    assert backend.bindings(backend.queue_name(cid, 1)) == [("amq.topic", "mix.t")]
