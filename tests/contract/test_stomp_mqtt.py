"""Contract: STOMP and MQTT meet in the one model, each with its plugin's mapping (MQTT topic a/b is routing key
a.b on amq.topic, which STOMP names /topic/a.b)."""

from __future__ import annotations

import pytest
from contractlib import Backend

pytestmark = pytest.mark.rabbitmq


@pytest.mark.parametrize(("qos", "persistent"), [(1, "true"), (0, "1")])
def test_mqtt_publish_reaches_a_stomp_topic_subscriber(backend: Backend, qos: int, persistent: str) -> None:
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/topic/from.mqtt.*", "id": "m", "receipt": "s"})
    c.receipt("s")
    mqtt = backend.raw()
    mqtt.connect()
    mqtt.publish("from/mqtt/x", b"hello stomp", qos)
    frame = c.recv_command("MESSAGE")
    # x-mqtt-publish-qos (a byte) and x-mqtt-dup (a bool) are not shown; delivery_mode is.
    assert frame.headers[1:2] == [("destination", "/topic/from.mqtt.x")]
    assert frame.headers[4:] == [("persistent", persistent), ("content-length", "11")]
    assert frame.body == b"hello stomp"


def test_stomp_send_reaches_mqtt_subscribers(backend: Backend) -> None:
    watcher = backend.watcher(("to/mqtt/+", 1), ("to/#", 0))
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/topic/to.mqtt.y", "receipt": "r"}, "hello mqtt")
    c.receipt("r")
    got = sorted((p.topic, p.payload, p.qos) for p in watcher.publishes(2))
    # No x-mqtt-publish-qos header: a STOMP message counts as QoS 1 on the QoS 1 subscription.
    assert got == [("to/mqtt/y", b"hello mqtt", 0), ("to/mqtt/y", b"hello mqtt", 1)]


def test_stomp_exchange_destination_reaches_mqtt(backend: Backend) -> None:
    watcher = backend.watcher(("ex/key", 0))
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/exchange/amq.topic/ex.key", "receipt": "r"}, "via exchange")
    c.receipt("r")
    assert watcher.recv_publish().payload == b"via exchange"


def test_stomp_and_amqp_round_trip(backend: Backend) -> None:
    backend.declare_queue("worker")
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/amq/queue/worker", "reply-to": "/temp-queue/answers",
                    "correlation-id": "job-1", "receipt": "r"}, "job")
    c.receipt("r")
    job = backend.get_wait("worker")
    assert (job.body, job.properties["correlation_id"]) == (b"job", "job-1")
    backend.publish("", job.properties["reply_to"], b"done", {"correlation_id": "job-1"})
    answer = c.recv_command("MESSAGE")
    assert (answer.get("subscription"), answer.get("correlation-id"), answer.body) == (
        "/temp-queue/answers", "job-1", b"done")
