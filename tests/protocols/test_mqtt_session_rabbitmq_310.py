"""MQTT session rules of RabbitMQ 3.10 that depend on the transport or on the queues behind a topic, driven
without a node or a socket (the contract suite checks the same rules against a real RabbitMQ)."""

from __future__ import annotations

import dataclasses

import pytest

from fakebroker.protocols.mqtt.codec import (
    Connack,
    Connect,
    Disconnect,
    MqttDecoder,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Will,
    encode,
)
from fakebroker.protocols.mqtt.session import MqttSession
from fakebroker.testing import INFO, FakeHost, SessionDriver

WEBSOCKET = dataclasses.replace(INFO, transport="websocket")
TRANSPORTS = pytest.mark.parametrize("websocket", [False, True], ids=["tcp", "websocket"])


def decode(data: bytes) -> list[object]:
    decoder = MqttDecoder()
    decoder.feed(data)
    return list(decoder)


def connected(host: FakeHost, client_id: str, websocket: bool = False, **connect: object) -> SessionDriver:
    driver = SessionDriver(MqttSession(WEBSOCKET if websocket else INFO, host))
    assert decode(driver.feed(encode(Connect(client_id=client_id, **connect)))) == [Connack(False, 0)]  # type: ignore[arg-type]
    return driver


def will_watcher(host: FakeHost) -> SessionDriver:
    watcher = connected(host, "watcher")
    assert decode(watcher.feed(encode(Subscribe(1, [("wills/#", 0)])))) == [Suback(1, [0])]
    return watcher


def wills(host: FakeHost) -> list[bytes]:
    return [m.body for m in host.model.log if m.protocol == "mqtt-will"]


# -- the will ------------------------------------------------------------------------------------------------
@TRANSPORTS
def test_will_after_disconnect_over_websocket_only(websocket: bool) -> None:
    host = FakeHost()
    watcher = will_watcher(host)
    dev = connected(host, "dev", websocket, will=Will("wills/dev", b"bye"))
    dev.feed(encode(Disconnect()))
    assert dev.session.close_requested
    dev.session.connection_lost()  # the runtime closes the socket
    assert wills(host) == ([b"bye"] if websocket else [])
    assert decode(watcher.drain()) == ([Publish("wills/dev", b"bye")] if websocket else [])


@pytest.mark.parametrize(("old_ws", "new_ws"), [(False, False), (False, True), (True, False), (True, True)])
def test_will_on_takeover_follows_the_old_connections_transport(old_ws: bool, new_ws: bool) -> None:
    host = FakeHost()
    old = connected(host, "dev", old_ws, will=Will("wills/dev", b"taken over"))
    connected(host, "dev", new_ws)
    assert old.aborted
    assert wills(host) == ([b"taken over"] if old_ws else [])


@TRANSPORTS
def test_will_when_the_subscription_queue_is_deleted_over_websocket_only(websocket: bool) -> None:
    host = FakeHost()
    dev = connected(host, "dev", websocket, will=Will("wills/dev", b"queue gone"))
    dev.feed(encode(Subscribe(1, [("t", 1)])))
    host.model.vhost("/").delete_queue("mqtt-subscription-devqos1")
    assert dev.aborted and dev.session.close_reason == "subscription queue deleted"
    assert wills(host) == ([b"queue gone"] if websocket else [])


def test_no_will_over_websocket_for_a_refused_connect() -> None:
    host = FakeHost()
    driver = SessionDriver(MqttSession(WEBSOCKET, host))
    refused = Connect(client_id="dev", username="guest", password=b"wrong", will=Will("wills/dev", b"x"))
    assert decode(driver.feed(encode(refused))) == [Connack(False, 4)]
    driver.session.connection_lost()
    assert wills(host) == []


# -- a queue that refuses a message (x-overflow: reject-publish) ---------------------------------------------
def full_queue(host: FakeHost) -> None:
    vhost = host.model.vhost("/")
    vhost.declare_queue("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    vhost.bind("full", "amq.topic", "f.#")
    host.model.publish("amq.topic", "f.first", b"fills it")


def test_refused_qos1_publish_closes_a_tcp_connection_without_puback_or_will() -> None:
    host = FakeHost()
    full_queue(host)
    pub = connected(host, "pub", will=Will("wills/pub", b"x"))
    out = pub.feed(encode(Publish("f/x", b"refused", 1, packet_id=5)) + encode(Pingreq()))
    assert decode(out) == []  # no PUBACK, and the PINGREQ behind it is not read
    assert pub.session.close_requested
    assert pub.session.close_reason == "a queue refused a QoS 1 message (full: reject-publish)"
    pub.session.connection_lost()
    assert wills(host) == []
    (_, refused) = host.model.log
    assert (refused.queues, refused.refused) == ((), ("full",))
    assert refused.describe().endswith("-> no queue took it; refused by full")


def test_refused_qos1_publish_over_websocket_is_left_unacknowledged() -> None:
    host = FakeHost()
    full_queue(host)
    pub = connected(host, "pub", websocket=True)
    out = pub.feed(encode(Publish("f/x", b"refused", 1, packet_id=5)) + encode(Publish("g", b"fine", 1, packet_id=6))
                   + encode(Pingreq()))
    assert decode(out) == [Puback(6), Pingresp()]
    assert not pub.session.close_requested


@TRANSPORTS
def test_refused_qos0_publish_keeps_the_connection(websocket: bool) -> None:
    host = FakeHost()
    full_queue(host)
    pub = connected(host, "pub", websocket)
    assert decode(pub.feed(encode(Publish("f/x", b"refused")) + encode(Pingreq()))) == [Pingresp()]
    assert not pub.session.close_requested


def test_a_publish_routed_to_a_full_and_a_free_queue_is_still_refused() -> None:
    host = FakeHost()
    full_queue(host)
    sub = connected(host, "sub")
    sub.feed(encode(Subscribe(1, [("f/#", 0)])))
    pub = connected(host, "pub")
    assert decode(pub.feed(encode(Publish("f/x", b"half", 1, packet_id=1)))) == []
    assert pub.session.close_requested
    assert decode(sub.drain()) == [Publish("f/x", b"half")]


# -- retained messages -----------------------------------------------------------------------------------------
def test_retained_messages_of_one_subscribe_go_out_last_filter_first() -> None:
    host = FakeHost()
    pub = connected(host, "pub")
    for topic in ("r/1", "r/2", "r/3"):
        pub.feed(encode(Publish(topic, topic.encode(), 1, retain=True, packet_id=1)))
    sub = connected(host, "sub")
    out = decode(sub.feed(encode(Subscribe(20, [("r/1", 1), ("r/2", 0), ("r/#", 1), ("r/3", 1)]))))
    assert out == [Suback(20, [1, 0, 1, 1]), Publish("r/3", b"r/3", 1, True, packet_id=1),
                   Publish("r/2", b"r/2", 0, True), Publish("r/1", b"r/1", 1, True, packet_id=2)]
