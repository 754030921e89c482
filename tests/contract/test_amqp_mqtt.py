"""AMQP 0-9-1 and MQTT on one broker: what a pika client publishes reaches MQTT subscribers, and back."""

from __future__ import annotations

import pika
import pytest
from amqpkit import Collector, connect
from contractlib import Backend

from fakebroker.protocols.mqtt.codec import Publish


def test_amqp_publish_reaches_an_mqtt_subscriber(backend: Backend) -> None:
    mqtt = backend.raw()
    mqtt.connect()
    mqtt.subscribe(("devices/+/cmd", 1))
    ch = connect(backend).channel()
    ch.basic_publish("amq.topic", "devices.lamp.cmd", b"on", pika.BasicProperties(content_type="text/plain"))
    assert mqtt.recv_publish() == Publish("devices/lamp/cmd", b"on", 1, False, False, 1)


def test_mqtt_publish_reaches_an_amqp_consumer_with_the_plugins_headers(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, "amq.topic", "sensors.#")
    got = Collector(conn, ack=True)
    ch.basic_consume(queue, got)
    mqtt = backend.raw()
    mqtt.connect()
    mqtt.publish("sensors/kitchen/temp", b"21.5", 1)
    mqtt.publish("sensors/hall/temp", b"19.0", 0)
    (m1, p1, b1), (m2, p2, b2) = got.wait(2)
    assert (m1.exchange, m1.routing_key, b1, p1.delivery_mode) == ("amq.topic", "sensors.kitchen.temp", b"21.5", 2)
    assert p1.headers == {"x-mqtt-publish-qos": 1, "x-mqtt-dup": False}
    assert (m2.routing_key, b2, p2.delivery_mode, p2.headers["x-mqtt-publish-qos"]) == (
        "sensors.hall.temp", b"19.0", 1, 0)


def test_an_amqp_consumer_on_an_mqtt_subscription_queue(backend: Backend) -> None:
    # The MQTT plugin's queue is an ordinary queue: an AMQP client may read it (here with basic.get).
    mqtt = backend.raw()
    cid = backend.cid("sub")
    mqtt.connect(cid, clean_session=False)
    mqtt.subscribe(("alerts/#", 1))
    mqtt.close()
    ch = connect(backend).channel()
    ch.basic_publish("amq.topic", "alerts.fire", b"evacuate")
    name = backend.queue_name(cid, 1)
    method, props, body = ch.basic_get(name, auto_ack=True)
    assert (method.routing_key, body) == ("alerts.fire", b"evacuate")


def test_mqtt_publish_refused_by_a_reject_publish_queue(backend: Backend) -> None:
    """A queue declared over AMQP refuses an MQTT device's publish: RabbitMQ 3.10's MQTT connection dies of the
    negative confirm, with no PUBACK (fakebroker closes it the same way)."""
    backend.declare_queue("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    backend.bind("full", "amq.topic", "a.#")
    c = backend.raw()
    c.connect()
    c.publish("a/b", b"fits", 1)
    with pytest.raises(AssertionError, match="closed the connection"):
        c.publish("a/b", b"refused", 1)
    assert backend.get("full") is not None and backend.get("full") is None
