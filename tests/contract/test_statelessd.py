"""A statelessd publish lands as the same AMQP message as the equivalent publish on RabbitMQ.

RabbitMQ has no statelessd: statelessd was a separate gateway that published through pika. So the fake side
posts to fakebroker's statelessd listener, and the real side publishes what statelessd would have sent
RabbitMQ (the stripped body, the typed properties) through the management API. Both are then read back with
the management API's ``get``, which must answer the same JSON.
"""

from __future__ import annotations

from urllib.parse import quote

import requests
from contractlib import Backend
from managementlib import api, get, publish, put_queue

FIELDS = {
    "body": "  {\"order\": 42}\n", "content_type": "application/json", "content_encoding": "utf-8",
    "delivery_mode": "2", "priority": "5", "timestamp": "1700000000", "app_id": "shop", "message_id": "m-42",
    "correlation_id": "c-1", "reply_to": "replies", "type": "order.created", "user_id": "guest",
    "headers": '{"tenant": "acme", "n": 7, "ok": true}', "expire": "60000",
}
#: What statelessd hands pika for FIELDS.
AMQP_PROPERTIES = {
    "content_type": "application/json", "content_encoding": "utf-8", "delivery_mode": 2, "priority": 5,
    "timestamp": 1700000000, "app_id": "shop", "message_id": "m-42", "correlation_id": "c-1", "reply_to": "replies",
    "type": "order.created", "user_id": "guest", "headers": {"tenant": "acme", "n": 7, "ok": True},
    "expiration": "60000",
}


def test_a_statelessd_publish_lands_as_the_same_amqp_message(backend: Backend) -> None:
    put_queue(backend, "orders")
    api(backend, "POST", "/api/bindings/{vhost}/e/amq.topic/q/orders", {"routing_key": "orders.#"})
    if backend.is_fake:
        url = f"{backend.broker.http_url}/{quote(backend.vhost, safe='')}/amq.topic/orders.created"  # type: ignore[attr-defined]
        r = requests.post(url, data=FIELDS, auth=("guest", "guest"), timeout=10)
        assert r.status_code == 204
    else:
        assert publish(backend, "amq.topic", "orders.created", '{"order": 42}', AMQP_PROPERTIES).json() == {
            "routed": True}
    assert get(backend, "orders").json() == [{
        "payload_bytes": 13, "redelivered": False, "exchange": "amq.topic", "routing_key": "orders.created",
        "message_count": 0, "properties": AMQP_PROPERTIES, "payload": '{"order": 42}', "payload_encoding": "string",
    }]
