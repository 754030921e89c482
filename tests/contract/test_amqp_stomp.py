"""AMQP 0-9-1 and STOMP on one broker: a pika publish reaches STOMP subscribers with the STOMP plugin's header
mapping, and a STOMP SEND reaches an AMQP consumer with its properties."""

from __future__ import annotations

import pika
from amqpkit import Collector, connect
from contractlib import Backend


def test_amqp_publish_reaches_a_stomp_subscriber_with_its_properties(backend: Backend) -> None:
    stomp = backend.stomp_client().connected()
    stomp.send("SUBSCRIBE", {"destination": "/topic/orders.*", "id": "s1", "receipt": "r"})
    stomp.receipt("r")
    ch = connect(backend).channel()
    ch.basic_publish("amq.topic", "orders.eu", b'{"id": 1}', pika.BasicProperties(
        content_type="application/json", correlation_id="c-1", message_id="m-1", delivery_mode=2,
        headers={"tenant": "acme"}))
    frame = stomp.recv_command("MESSAGE")
    assert frame.body == b'{"id": 1}'
    for name, value in (("destination", "/topic/orders.eu"), ("content-type", "application/json"),
                        ("correlation-id", "c-1"), ("amqp-message-id", "m-1"), ("persistent", "true"),
                        ("tenant", "acme")):
        assert frame.get(name) == value, name


def test_stomp_send_reaches_an_amqp_consumer(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    ch.queue_declare("from-stomp", durable=True)  # as the STOMP plugin declares /queue/ destinations
    got = Collector(conn, ack=True)
    ch.basic_consume("from-stomp", got)
    stomp = backend.stomp_client().connected()
    stomp.send("SEND", {"destination": "/queue/from-stomp", "content-type": "text/plain", "persistent": "true",
                        "correlation-id": "c-2", "x-custom": "yes", "receipt": "r"}, "hello amqp")
    stomp.receipt("r")
    (method, props, body), = got.wait(1)
    assert (method.routing_key, body) == ("from-stomp", b"hello amqp")
    assert (props.content_type, props.correlation_id, props.delivery_mode) == ("text/plain", "c-2", 2)
    assert props.headers["x-custom"] == "yes"
