"""The management API on fakebroker alone: what the contract suite cannot compare (current counts, users with
limited vhosts, WebSocket connections, paths left out)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import requests

import fakebroker

AUTH = ("guest", "guest")


@pytest.fixture
def broker() -> Iterator[fakebroker.ThreadedBroker]:
    users = {"guest": "guest", "limited": {"password": "pw", "vhosts": ["/"], "tags": ["monitoring"]}}
    with fakebroker.start(users=users, vhosts=("/", "other")) as b:
        yield b


def call(broker: fakebroker.ThreadedBroker, method: str, path: str, body: Any = None,
         auth: tuple[str, str] = AUTH) -> requests.Response:
    return requests.request(method, broker.management_url + path, json=body, auth=auth, timeout=5)


def test_counts_are_current_at_once(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("counted")
    for n in range(3):
        broker.publish("", "counted", f"m{n}", {"delivery_mode": 2})
    delivery = broker.get("counted", auto_ack=False)
    assert delivery is not None
    q = call(broker, "GET", "/api/queues/%2F/counted").json()
    assert (q["messages"], q["messages_ready"], q["messages_unacknowledged"]) == (3, 2, 1)
    assert (q["messages_persistent"], q["message_bytes_ready"]) == (2, 4)
    assert q["idle_since"].endswith("+00:00")
    overview = call(broker, "GET", "/api/overview").json()
    assert overview["queue_totals"]["messages"] == 3
    assert overview["object_totals"]["queues"] == 1
    vhost = call(broker, "GET", "/api/vhosts/%2F").json()
    assert (vhost["messages"], vhost["messages_ready"]) == (3, 2)


def test_head_is_a_get_without_the_body(broker: fakebroker.ThreadedBroker) -> None:
    r = requests.head(broker.management_url + "/api/overview", auth=AUTH, timeout=5)
    assert r.status_code == 200
    assert int(r.headers["content-length"]) > 100
    assert r.content == b""


def test_users_and_their_tags(broker: fakebroker.ThreadedBroker) -> None:
    assert call(broker, "GET", "/api/whoami", auth=("limited", "pw")).json() == {"name": "limited",
                                                                                 "tags": ["monitoring"]}
    users = call(broker, "GET", "/api/users").json()
    assert [(u["name"], u["tags"]) for u in users] == [("guest", ["administrator"]), ("limited", ["monitoring"])]


def test_a_user_sees_and_uses_only_its_vhosts(broker: fakebroker.ThreadedBroker) -> None:
    limited = ("limited", "pw")
    assert [v["name"] for v in call(broker, "GET", "/api/vhosts", auth=limited).json()] == ["/"]
    r = call(broker, "GET", "/api/queues/other", auth=limited)
    assert (r.status_code, r.json()) == (401, {"error": "not_authorised", "reason": "Access refused."})
    assert call(broker, "PUT", "/api/queues/other/q", {}, auth=limited).status_code == 401
    assert call(broker, "PUT", "/api/queues/other/q", {}).status_code == 201


def test_queues_of_every_vhost_sorted_by_vhost_then_name(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("b", vhost="other")
    broker.declare_queue("a", vhost="other")
    broker.declare_queue("z")
    listed = call(broker, "GET", "/api/queues?columns=vhost,name").json()
    assert listed == [{"vhost": "/", "name": "z"}, {"vhost": "other", "name": "a"}, {"vhost": "other", "name": "b"}]


def test_nested_columns(broker: fakebroker.ThreadedBroker) -> None:
    # As RabbitMQ does, a dotted column keeps the whole top-level field.
    overview = call(broker, "GET", "/api/overview?columns=object_totals.queues,rabbitmq_version").json()
    assert set(overview) == {"object_totals", "rabbitmq_version"}
    assert overview["object_totals"]["queues"] == 0 and "connections" in overview["object_totals"]


def test_web_mqtt_connection_is_listed_and_force_closed_without_its_will(
        broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("wills")
    broker.bind("wills", "amq.topic", "will.#")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ws-device", transport="websockets")
    client.ws_set_options(path="/ws")
    client.will_set("will/ws", b"gone")
    host, port = broker.addresses["web_mqtt"]
    client.connect(host, port)
    client.loop_start()
    try:
        conn = _wait_for(lambda: next((c for c in call(broker, "GET", "/api/connections").json()
                                       if c["client_properties"].get("client_id") == "ws-device"), None))
        assert conn["protocol"] == "Web MQTT 3.1.1"
        assert call(broker, "DELETE", f"/api/connections/{requests.utils.quote(conn['name'], safe='')}"
                    ).status_code == 204
        _wait_for(lambda: broker.clients.get("ws-device") is None)
    finally:
        client.loop_stop()
    assert broker.peek("wills") == []


def test_paths_that_are_not_served_are_404(broker: fakebroker.ThreadedBroker) -> None:
    for path in ("/api/definitions", "/api/policies", "/api/permissions", "/cli/rabbitmqadmin"):
        r = call(broker, "GET", path)
        assert (r.status_code, r.json()) == (404, {"error": "Object Not Found", "reason": "Not Found"}), path
    assert call(broker, "GET", "/api/exchanges/%2F/amq.topic/bindings/destination").json() == []


def test_the_management_listener_does_not_list_http_clients(broker: fakebroker.ThreadedBroker) -> None:
    with requests.Session() as http:
        http.auth = AUTH
        assert http.get(broker.management_url + "/api/connections", timeout=5).json() == []
        assert any(c.listener == "management" for c in broker.clients)


def _wait_for(predicate: Any) -> Any:
    import time

    deadline = time.monotonic() + 5
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_deleting_a_vhost_forgets_its_retained_messages(broker: fakebroker.ThreadedBroker) -> None:
    assert call(broker, "PUT", "/api/vhosts/tenant", {}).status_code == 201
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tenant-device")
    device.username_pw_set("tenant:guest", "guest")
    device.connect(*broker.mqtt)
    device.loop_start()
    device.publish("state/door", b"open", qos=1, retain=True).wait_for_publish(5)
    assert broker.retained(vhost="tenant") == {"state/door": b"open"}
    assert call(broker, "DELETE", "/api/vhosts/tenant").status_code == 204
    _wait_for(lambda: broker.clients.get("tenant-device") is None)
    device.loop_stop()
    assert call(broker, "PUT", "/api/vhosts/tenant", {}).status_code == 201
    assert broker.retained(vhost="tenant") == {}


def test_json_integers_are_amqp_longs_in_error_texts(broker: fakebroker.ThreadedBroker) -> None:
    # RabbitMQ's management API types every JSON integer as long; its inequivalence texts name that type.
    assert call(broker, "PUT", "/api/queues/%2F/typed", {}).status_code == 201
    r = call(broker, "PUT", "/api/queues/%2F/typed", {"arguments": {"x-max-length": 1}})
    assert r.json()["reason"] == ("inequivalent arg 'x-max-length' for queue 'typed' in vhost '/': received the value "
                                  "'1' of type 'long' but current is none")


def test_a_permission_for_a_limited_user_lets_it_in_without_touching_the_options(
        broker: fakebroker.ThreadedBroker) -> None:
    limited = ("limited", "pw")
    assert call(broker, "GET", "/api/queues/other", auth=limited).status_code == 401
    r = call(broker, "PUT", "/api/permissions/other/limited", {"configure": ".*", "write": ".*", "read": ".*"})
    assert r.status_code == 201
    assert call(broker, "GET", "/api/queues/other", auth=limited).status_code == 200
    assert broker.options.users["limited"]["vhosts"] == ["/"]
    requests.post(f"{broker.management_url}/api/fakebroker/reset", auth=AUTH, timeout=10)
    assert call(broker, "GET", "/api/queues/other", auth=limited).status_code == 401
