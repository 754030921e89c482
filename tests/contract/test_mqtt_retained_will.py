"""Retained messages and Last Will."""

from __future__ import annotations

from typing import Any

import pytest
from contractlib import TIMEOUT, Backend, Got, RawClient, wait_until
from managementlib import api, q

from fakebroker.protocols.mqtt.codec import Connack, Disconnect, Publish, Suback, Subscribe, Will

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


def retained_after(c: RawClient, packet_id: int, filters: list[tuple[str, int]], count: int) -> list[tuple[str, int]]:
    """SUBSCRIBE with ``filters`` in one packet; (topic, QoS) of the ``count`` retained messages that follow
    the SUBACK, in the order they came. (Their packet ids differ: see test_retained_packet_id_after_suback.)"""
    c.send(Subscribe(packet_id, filters))
    assert c.recv() == Suback(packet_id, [min(q, 1) for _, q in filters])
    got = c.publishes(count)
    assert all(p.retain and p.payload == p.topic.encode() for p in got), got
    c.expect_nothing()
    return [(p.topic, p.qos) for p in got]


def store_retained(backend: Backend, *topics: str) -> None:
    pub = backend.raw()
    pub.connect(backend.cid("store"))
    for topic in topics:
        pub.publish(topic, topic.encode(), 1, retain=True)


def test_retained_messages_of_one_subscribe_come_in_reverse_filter_order(backend: Backend) -> None:
    store_retained(backend, "ro/r1", "ro/r2", "ro/r3")
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    assert retained_after(sub, 20, [("ro/r1", 1), ("ro/r2", 1), ("ro/r3", 1)], 3) == [
        ("ro/r3", 1), ("ro/r2", 1), ("ro/r1", 1)]


def test_retained_order_with_a_wildcard_and_a_repeated_filter(backend: Backend) -> None:
    # The wildcard finds nothing; r1 comes once per filter naming it, each time at that filter's QoS.
    store_retained(backend, "ro/r1", "ro/r2", "ro/r3")
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    filters = [("ro/r1", 1), ("ro/r2", 1), ("ro/r3", 1), ("ro/#", 1), ("ro/r1", 0)]
    assert retained_after(sub, 20, filters, 4) == [("ro/r1", 0), ("ro/r3", 1), ("ro/r2", 1), ("ro/r1", 1)]


def test_retained_order_skips_filters_without_a_message(backend: Backend) -> None:
    store_retained(backend, "ro/r1", "ro/r3")
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    filters = [("ro/r1", 0), ("ro/none", 1), ("ro/r3", 1)]
    assert retained_after(sub, 7, filters, 2) == [("ro/r3", 1), ("ro/r1", 0)]


def test_retained_messages_of_separate_subscribes_come_in_subscribe_order(backend: Backend) -> None:
    store_retained(backend, "ro/r1", "ro/r2", "ro/r3")
    sub = backend.raw()
    sub.connect(backend.cid("sub"))
    got = [retained_after(sub, pid, [(topic, 1)], 1) for pid, topic in enumerate(("ro/r1", "ro/r2", "ro/r3"), 1)]
    assert got == [[("ro/r1", 1)], [("ro/r2", 1)], [("ro/r3", 1)]]


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


# Over TCP a DISCONNECT or a takeover skips the will; RabbitMQ 3.10's web_mqtt publishes it however the
# connection ends.
TRANSPORTS = pytest.mark.parametrize("websocket", [False, True], ids=["tcp", "websocket"])


def expect_will(watcher: RawClient, websocket: bool, will: Publish) -> None:
    """The will reaches the watcher when the connection was a WebSocket one, and only then."""
    if websocket:
        assert watcher.recv_publish() == will
    watcher.expect_nothing()


@TRANSPORTS
def test_will_on_disconnect_over_websocket_only(backend: Backend, websocket: bool) -> None:
    watcher = backend.watcher(("will/#", 1))
    c = backend.raw(websocket=websocket)
    c.connect(backend.cid("polite"), will=Will("will/polite", b"said goodbye", 1, False))
    c.disconnect()  # DISCONNECT, then wait for the broker to close
    expect_will(watcher, websocket, Publish("will/polite", b"said goodbye", 1, False, False, 1))


def test_websocket_will_on_disconnect_then_close_frame(backend: Backend) -> None:
    watcher = backend.watcher(("will/#", 1))
    c = backend.raw(websocket=True)
    c.connect(backend.cid("browser"), will=Will("will/browser", b"tab closed", 0, False))
    c.send(Disconnect())
    c.send_close_frame()  # what a browser client's end() does
    assert c.expect_closed() == []
    assert watcher.recv_publish() == Publish("will/browser", b"tab closed", 0, False, False, None)


def test_websocket_will_on_close_frame_without_disconnect(backend: Backend) -> None:
    watcher = backend.watcher(("will/#", 1))
    c = backend.raw(websocket=True)
    c.connect(backend.cid("abrupt"), will=Will("will/abrupt", b"closed", 1, False))
    c.send_close_frame()
    assert c.expect_closed() == []
    assert watcher.recv_publish() == Publish("will/abrupt", b"closed", 1, False, False, 1)


def test_no_will_when_an_operator_closes_a_websocket_connection(backend: Backend) -> None:
    # The one end without a will over WebSocket too (over TCP: test_management_api.py).
    watcher = backend.watcher(("will/#", 1))
    cid = backend.cid("forced")
    c = backend.raw(websocket=True)
    c.connect(cid, will=Will("will/forced", b"never", 1, False))

    def listed() -> dict[str, Any] | None:
        found = [conn for conn in api(backend, "GET", "/api/connections").json()
                 if (conn.get("client_properties") or {}).get("client_id") == cid]
        return found[0] if found else None

    conn = wait_until(listed, what="the connection in /api/connections")
    assert conn["protocol"] == "Web MQTT 3.1.1"
    assert api(backend, "DELETE", f"/api/connections/{q(conn['name'])}").status_code == 204
    assert c.expect_closed() == []
    watcher.expect_nothing()


@TRANSPORTS
def test_paho_will_on_disconnect_over_websocket_only(backend: Backend, websocket: bool) -> None:
    watcher = backend.watcher(("will/#", 1))
    c = backend.paho("paho", websocket=websocket, will=("will/paho", b"paho left", 1, False))
    assert c.connect() == (False, 0)
    c.disconnect()
    expect_will(watcher, websocket, Publish("will/paho", b"paho left", 1, False, False, 1))


@TRANSPORTS
def test_retained_will_on_disconnect_over_websocket_only(backend: Backend, websocket: bool) -> None:
    c = backend.raw(websocket=websocket)
    c.connect(backend.cid("ret"), will=Will("rwill/state", b"offline", 1, True))
    c.disconnect()
    late = backend.raw()
    late.connect(backend.cid("late"))
    late.subscribe(("rwill/state", 1))
    if websocket:
        assert late.recv_publish(timeout=TIMEOUT) == Publish("rwill/state", b"offline", 1, True, False, 1)
    late.expect_nothing()


@pytest.mark.parametrize(("old_ws", "new_ws"), [(False, False), (False, True), (True, False), (True, True)],
                         ids=["tcp-by-tcp", "tcp-by-websocket", "websocket-by-tcp", "websocket-by-websocket"])
def test_will_on_takeover_of_a_websocket_connection_only(backend: Backend, old_ws: bool, new_ws: bool) -> None:
    watcher = backend.watcher(("will/#", 1))
    cid = backend.cid("taken")
    old = backend.raw(websocket=old_ws)
    old.connect(cid, will=Will("will/taken", b"old will", 1, False))
    new = backend.raw(websocket=new_ws)
    assert new.connect(cid) == Connack(False, 0)
    assert old.expect_closed() == []
    expect_will(watcher, old_ws, Publish("will/taken", b"old will", 1, False, False, 1))
    new.expect_open()


def test_will_when_the_subscription_queue_of_a_websocket_connection_is_deleted(backend: Backend) -> None:
    # Over TCP: test_mqtt_sessions.py::test_deleting_a_subscription_queue_closes_the_connection_without_will
    watcher = backend.watcher(("will/#", 1))
    cid = backend.cid("victim")
    c = backend.raw(websocket=True)
    c.connect(cid, will=Will("will/victim", b"queue gone", 1, False))
    c.subscribe(("v/t", 1))
    backend.delete_queue(backend.queue_name(cid, 1))  # an operator removes it under the consumer
    assert c.expect_closed() == []
    expect_will(watcher, True, Publish("will/victim", b"queue gone", 1, False, False, 1))


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
