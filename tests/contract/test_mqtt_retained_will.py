"""Retained messages and Last Will."""

from __future__ import annotations

from contractlib import Backend, Got

from fakebroker.protocols.mqtt.codec import Publish, Will

WILL_PROPERTIES = {"delivery_mode": 2, "headers": {"x-mqtt-publish-qos": 1, "x-mqtt-dup": False}}


# -- retained ---------------------------------------------------------------------------------------------
def test_retained_goes_to_exact_subscribers_after_suback(backend: Backend) -> None:
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("ret/a", b"stored", 1, retain=True)
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    assert sub.subscribe(("ret/a", 1)) == [1]  # the SUBACK comes first ...
    assert sub.recv() == Publish("ret/a", b"stored", 1, True, False, 1)  # ... then the retained message


def test_retained_qos_is_the_minimum_of_stored_and_granted(backend: Backend) -> None:
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("ret/one", b"stored at 1", 1, retain=True)
    pub.publish("ret/zero", b"stored at 0", 0, retain=True)
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    sub.subscribe(("ret/one", 0))
    assert sub.recv_publish() == Publish("ret/one", b"stored at 1", 0, True, False, None)
    sub.subscribe(("ret/zero", 1))
    assert sub.recv_publish() == Publish("ret/zero", b"stored at 0", 0, True, False, None)


def test_wildcard_subscribers_get_no_retained_message(backend: Backend) -> None:
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("wret/x", b"stored", 1, retain=True)
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    assert sub.subscribe(("wret/#", 1), ("wret/+", 0), ("#", 1)) == [1, 0, 1]
    sub.expect_nothing()


def test_empty_retained_payload_clears_and_is_still_routed(backend: Backend) -> None:
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("clr/t", b"stored", 1, retain=True)
    live = backend.raw()
    live.connect(backend.cid("live"))
    live.subscribe(("clr/#", 0))
    pub.publish("clr/t", b"", 1, retain=True)
    assert live.recv_publish() == Publish("clr/t", b"", 0, False, False, None)
    late = backend.raw()
    late.connect(backend.cid("late"))
    late.subscribe(("clr/t", 1))
    late.expect_nothing()


def test_retained_is_overwritten_by_retained_only(backend: Backend) -> None:
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("ow/t", b"first", 1, retain=True)
    pub.publish("ow/t", b"second", 1, retain=True)
    pub.publish("ow/t", b"not retained", 1)
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    sub.subscribe(("ow/t", 1))
    assert sub.recv_publish().payload == b"second"
    sub.expect_nothing()


def test_amqp_publish_is_never_retained(backend: Backend) -> None:
    backend.publish("amq.topic", "amqp.ret", b"from amqp", {"headers": {"x-mqtt-publish-qos": 1}})
    sub = backend.raw()
    sub.connect()
    sub.subscribe(("amqp/ret", 1))
    sub.expect_nothing()


def test_retained_message_for_a_new_subscription_of_a_resumed_session(backend: Backend) -> None:
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("rs/t", b"stored", 1, retain=True)
    cid = backend.cid("resumed")
    first = backend.raw()
    first.connect(cid, clean_session=False)
    first.subscribe(("rs/other", 1))
    first.disconnect()
    again = backend.raw()
    assert again.connect(cid, clean_session=False).session_present
    again.subscribe(("rs/t", 1))
    assert again.recv_publish() == Publish("rs/t", b"stored", 1, True, False, 1)


# -- Last Will ----------------------------------------------------------------------------------------------
def test_will_on_abrupt_close(backend: Backend) -> None:
    tap = backend.tap("will.#")
    watcher = backend.watcher(("will/#", 1))
    cid = backend.cid("dies")
    c = backend.raw()
    c.connect(cid, will=Will("will/one", b"gone", 1, False))
    backend.disconnect(cid)
    assert watcher.recv_publish() == Publish("will/one", b"gone", 1, False, False, 1)
    assert backend.get_wait(tap) == Got("amq.topic", "will.one", b"gone", WILL_PROPERTIES, False)


def test_will_qos0(backend: Backend) -> None:
    tap = backend.tap("will.#")
    cid = backend.cid("dies0")
    c = backend.raw()
    c.connect(cid, will=Will("will/zero", b"gone", 0, False))
    backend.disconnect(cid)
    assert backend.get_wait(tap).properties == {
        "delivery_mode": 1, "headers": {"x-mqtt-publish-qos": 0, "x-mqtt-dup": False}}


def test_no_will_on_disconnect(backend: Backend) -> None:
    watcher = backend.watcher(("will/#", 1))
    c = backend.raw()
    c.connect(backend.cid("polite"), will=Will("will/polite", b"never", 1, False))
    c.disconnect()
    watcher.expect_nothing()


def test_retained_will(backend: Backend) -> None:
    watcher = backend.watcher(("rwill/#", 1))
    cid = backend.cid("dies")
    c = backend.raw()
    c.connect(cid, will=Will("rwill/t", b"last words", 1, True))
    backend.disconnect(cid)
    assert watcher.recv_publish() == Publish("rwill/t", b"last words", 1, False, False, 1)
    late = backend.raw()
    late.connect(backend.cid("late"))
    late.subscribe(("rwill/t", 1))
    assert late.recv_publish() == Publish("rwill/t", b"last words", 1, True, False, 1)


def test_no_will_on_takeover(backend: Backend) -> None:
    watcher = backend.watcher(("will/#", 1))
    cid = backend.cid("taken")
    old = backend.raw()
    old.connect(cid, will=Will("will/taken", b"old will", 1, False))
    new = backend.raw()
    new.connect(cid)
    old.expect_closed()
    watcher.expect_nothing()


def test_will_after_keepalive_timeout(backend: Backend) -> None:
    watcher = backend.watcher(("will/#", 1), keepalive=0)
    c = backend.raw()
    c.connect(backend.cid("silent"), keepalive=1, will=Will("will/silent", b"timed out", 1, False))
    backend.advance(3.5)  # past 1.5 x (fakebroker) and 3 x (RabbitMQ 3.10) the keepalive
    assert c.expect_closed() == []
    assert watcher.recv_publish() == Publish("will/silent", b"timed out", 1, False, False, 1)


def test_paho_will_on_network_loss(backend: Backend) -> None:
    watcher = backend.paho("watcher")
    assert watcher.connect() == (False, 0)
    assert watcher.subscribe("pw/#", 1) == [1]
    dying = backend.paho("dying", will=("pw/status", b"offline", 1, True))
    assert dying.connect() == (False, 0)
    backend.disconnect(dying.client_id)
    got = watcher.wait_messages(1)
    assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == [("pw/status", b"offline", 1, False)]


def test_will_with_qos2_keeps_its_qos_header(backend: Backend) -> None:
    tap = backend.tap("will.#")
    watcher = backend.watcher(("will/#", 1))
    cid = backend.cid("dies2")
    c = backend.raw()
    c.connect(cid, will=Will("will/two", b"qos2 will", 2, False))
    backend.disconnect(cid)
    assert watcher.recv_publish() == Publish("will/two", b"qos2 will", 1, False, False, 1)
    assert backend.get_wait(tap).properties == {
        "delivery_mode": 2, "headers": {"x-mqtt-publish-qos": 2, "x-mqtt-dup": False}}


def test_retained_qos2_publish_is_stored_at_qos1(backend: Backend) -> None:
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("r2/t", b"stored", 2, retain=True)
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    assert sub.subscribe(("r2/t", 2)) == [1]
    assert sub.recv_publish() == Publish("r2/t", b"stored", 1, True, False, 1)


def test_empty_non_retained_payload_is_routed(backend: Backend) -> None:
    tap = backend.tap("empty.#")
    c = backend.raw()
    c.connect()
    c.subscribe(("empty/t", 1))
    c.publish("empty/t", b"", 1)
    assert c.recv_publish() == Publish("empty/t", b"", 1, False, False, 1)
    assert backend.get_wait(tap).body == b""


def test_large_payload(backend: Backend) -> None:
    c = backend.raw()
    c.connect()
    c.subscribe(("big/t", 1))
    payload = bytes(range(256)) * 4096  # 1 MiB
    c.publish("big/t", payload, 1)
    assert c.recv_publish(timeout=10) == Publish("big/t", payload, 1, False, False, 1)


def test_retained_will_with_empty_payload_clears_the_retained_message(backend: Backend) -> None:
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("status/dev", b"online", 1, retain=True)
    watcher = backend.watcher(("status/#", 1))
    cid = backend.cid("dev")
    dev = backend.raw()
    dev.connect(cid, will=Will("status/dev", b"", 1, True))
    backend.disconnect(cid)
    assert watcher.recv_publish() == Publish("status/dev", b"", 1, False, False, 1)
    late = backend.raw()
    late.connect(backend.cid("late"))
    late.subscribe(("status/dev", 1))
    late.expect_nothing()
