"""The control plane over HTTP: the fixture's powers for a test suite in another language."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import requests

import fakebroker

AUTH = ("guest", "guest")


@pytest.fixture
def broker() -> Iterator[fakebroker.ThreadedBroker]:
    with fakebroker.start() as b:
        yield b


def ctl(broker: fakebroker.ThreadedBroker, method: str, path: str, body: Any = None,
        timeout: float = 10) -> requests.Response:
    return requests.request(method, f"{broker.management_url}/api/fakebroker{path}", json=body, auth=AUTH,
                            timeout=timeout)


def device(broker: fakebroker.ThreadedBroker, client_id: str, **will: Any) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if will:
        client.will_set(**will)
    client.connect(*broker.mqtt)
    client.loop_start()
    broker.wait_for_client(client_id)
    return client


def test_credentials_are_required(broker: fakebroker.ThreadedBroker) -> None:
    r = requests.get(f"{broker.management_url}/api/fakebroker/messages", timeout=5)
    assert r.status_code == 401
    r = requests.get(f"{broker.management_url}/api/fakebroker/messages", auth=("guest", "x"), timeout=5)
    assert r.json() == {"error": "not_authorized", "reason": "Login failed"}
    assert ctl(broker, "GET", "/nothing-here").status_code == 404


def test_the_message_log_with_the_fixture_s_filters(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("q")
    broker.bind("q", "amq.topic", "sensors.#")
    broker.publish("amq.topic", "sensors.kitchen.temp", b"21.5", {"headers": {"unit": "C"}})
    broker.publish("amq.topic", "lights.kitchen", b"on")
    broker.publish("amq.topic", "sensors.bin", b"\xff\x00")
    everything = ctl(broker, "GET", "/messages").json()
    assert [m["routing_key"] for m in everything] == ["sensors.kitchen.temp", "lights.kitchen", "sensors.bin"]
    first = everything[0]
    assert {k: first[k] for k in ("seq", "protocol", "exchange", "topic", "payload", "payload_encoding", "queues",
                                  "routed", "vhost")} == {
        "seq": 1, "protocol": "api", "exchange": "amq.topic", "topic": "sensors/kitchen/temp", "payload": "21.5",
        "payload_encoding": "string", "queues": ["q"], "routed": True, "vhost": "/"}
    assert everything[2]["payload_encoding"] == "base64"
    topic = ctl(broker, "GET", "/messages?topic=sensors%2F%23").json()
    assert [m["payload"] for m in topic] == ["21.5", "/wA="]
    assert [m["seq"] for m in ctl(broker, "GET", "/messages?routed=false").json()] == [2]
    assert [m["seq"] for m in ctl(broker, "GET", "/messages?header.unit=C").json()] == [1]
    assert [m["seq"] for m in ctl(broker, "GET", "/messages?since=1&limit=1").json()] == [3]
    assert [m["seq"] for m in ctl(broker, "GET", "/messages?payload=on").json()] == [2]
    bad = ctl(broker, "GET", "/messages?routed=maybe")
    assert bad.status_code == 400 and "routed" in bad.json()["reason"]


def test_long_poll_wait_answers_when_the_message_arrives(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("q")
    broker.bind("q", "amq.topic", "#")
    answer: dict[str, requests.Response] = {}
    waiter = threading.Thread(target=lambda: answer.setdefault(
        "r", ctl(broker, "POST", "/messages/wait", {"topic": "orders/+", "timeout": 10})))
    waiter.start()
    # The wait is registered when the broker has the request; a message before that would count too.
    time.sleep(0.05)
    assert "r" not in answer
    client = device(broker, "shop")
    client.publish("orders/42", b"created", qos=1).wait_for_publish(5)
    waiter.join(10)
    r = answer["r"]
    assert r.status_code == 200
    [m] = r.json()
    assert (m["protocol"], m["client_id"], m["topic"], m["payload"]) == ("mqtt", "shop", "orders/42", "created")
    client.loop_stop()
    client.disconnect()


def test_long_poll_wait_times_out_with_the_near_misses(broker: fakebroker.ThreadedBroker) -> None:
    broker.publish("amq.topic", "orders.41", b"x")
    r = ctl(broker, "POST", "/messages/wait", {"topic": "orders/42", "count": 1, "timeout": 0.2})
    assert r.status_code == 408
    body = r.json()
    assert body["error"] == "timeout"
    assert "orders.41" in body["reason"] or "orders/41" in body["reason"]


def test_wait_refuses_unknown_criteria(broker: fakebroker.ThreadedBroker) -> None:
    r = ctl(broker, "POST", "/messages/wait", {"colour": "red", "timeout": 0})
    assert r.status_code == 400 and "colour" in r.json()["reason"]


def test_a_client_that_leaves_during_a_wait_costs_nothing(broker: fakebroker.ThreadedBroker) -> None:
    with socket.create_connection(tuple(broker.addresses["management"]), timeout=5) as sock:
        body = b'{"timeout": 30}'
        sock.sendall(b"POST /api/fakebroker/messages/wait HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
                     b"Z3Vlc3Q6Z3Vlc3Q=\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.05)
    deadline = time.monotonic() + 5
    while any(c.listener == "management" for c in broker.clients):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    broker.publish("amq.topic", "after", b"x")  # no waiter left to be woken
    assert ctl(broker, "GET", "/messages").json()[0]["routing_key"] == "after"


def test_clock_and_advance_fire_broker_timers(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("ttl", arguments={"x-message-ttl": 5000})
    broker.publish("", "ttl", b"short-lived")
    clock = ctl(broker, "GET", "/clock").json()
    assert clock["virtual"] is True and clock["pending_timers"] >= 1
    r = ctl(broker, "POST", "/clock/advance", {"seconds": 5})
    assert r.status_code == 200
    assert r.json()["now"] == pytest.approx(clock["now"] + 5)
    assert broker.peek("ttl") == []
    assert ctl(broker, "POST", "/clock/advance", {"seconds": -1}).status_code == 400


def test_advance_on_the_wall_clock_is_a_conflict() -> None:
    with fakebroker.start(clock="wall") as broker:
        r = ctl(broker, "POST", "/clock/advance", {"seconds": 1})
        assert r.status_code == 409
        assert ctl(broker, "GET", "/clock").json()["virtual"] is False


def test_disconnect_is_a_device_leaving_the_network(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("wills")
    broker.bind("wills", "amq.topic", "status.#")
    client = device(broker, "sensor-1", topic="status/sensor-1", payload=b"offline")
    clients = ctl(broker, "GET", "/clients").json()
    assert [(c["protocol"], c["client_id"]) for c in clients if c["listener"] == "mqtt"] == [("mqtt", "sensor-1")]
    assert ctl(broker, "POST", "/clients/sensor-1/disconnect").status_code == 204
    assert [m.body for m in broker.peek("wills")] == [b"offline"]
    client.loop_stop()
    missing = ctl(broker, "POST", "/clients/nobody/disconnect")
    assert missing.status_code == 404 and "nobody" in missing.json()["reason"]


def test_stall_and_resume(broker: fakebroker.ThreadedBroker) -> None:
    client = device(broker, "frozen")
    assert ctl(broker, "POST", "/clients/frozen/stall").status_code == 204
    assert broker.clients.get("frozen").stalled  # type: ignore[union-attr]
    assert ctl(broker, "POST", "/clients/frozen/resume").status_code == 204
    assert not broker.clients.get("frozen").stalled  # type: ignore[union-attr]
    client.loop_stop()
    client.disconnect()


def test_refuse_connections_keeps_the_control_plane_open(broker: fakebroker.ThreadedBroker) -> None:
    assert ctl(broker, "POST", "/refuse-connections").status_code == 204
    with socket.socket() as s:
        assert s.connect_ex(tuple(broker.mqtt)) != 0
    assert ctl(broker, "POST", "/refuse-connections").status_code == 409
    assert ctl(broker, "DELETE", "/refuse-connections").status_code == 204
    with socket.create_connection(tuple(broker.mqtt), timeout=5):
        pass


def test_restart_keeps_durable_things_and_the_operator_s_connection(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("durable", durable=True)
    broker.declare_queue("transient")
    broker.publish("", "durable", b"kept", {"delivery_mode": 2})
    client = device(broker, "restarted")
    with requests.Session() as http:
        http.auth = AUTH
        r = http.post(f"{broker.management_url}/api/fakebroker/restart", timeout=10)
        assert r.status_code == 204
        # The same keep-alive connection still answers after the restart.
        assert http.get(f"{broker.management_url}/api/queues/%2F?columns=name", timeout=5).json() == [
            {"name": "durable"}]
    assert [m.body for m in broker.peek("durable")] == [b"kept"]
    assert broker.clients.get("restarted") is None
    client.loop_stop()


def test_message_faults(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("q")
    broker.bind("q", "amq.topic", "#")
    assert ctl(broker, "POST", "/faults/drop", {"count": 1, "routing_key": "a"}).status_code == 201
    assert ctl(broker, "POST", "/faults/delay", {"count": 1, "seconds": 2, "routing_key": "b"}).status_code == 201
    for key in ("a", "b", "c"):
        broker.publish("amq.topic", key, key.encode())
    assert [m.body for m in broker.peek("q")] == [b"c"]
    ctl(broker, "POST", "/clock/advance", {"seconds": 2})
    assert [m.body for m in broker.peek("q")] == [b"c", b"b"]
    faults = {m["routing_key"]: m["fault"] for m in ctl(broker, "GET", "/messages").json()}
    assert faults == {"a": "dropped", "b": "delayed", "c": None}


def test_reset_empties_the_broker_between_tests(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("q", durable=True)
    broker.declare_exchange("x", "topic")
    broker.bind("q", "x", "#")
    broker.publish("x", "k", b"m")
    client = device(broker, "old-test")
    client.publish("retained/t", b"r", qos=1, retain=True).wait_for_publish(5)
    ctl(broker, "POST", "/faults/drop", {"count": 5})
    with requests.Session() as http:
        http.auth = AUTH
        assert http.post(f"{broker.management_url}/api/fakebroker/reset", timeout=10).status_code == 204
        assert http.get(f"{broker.management_url}/api/fakebroker/messages", timeout=5).json() == []
    notes = [line for line in broker.traffic_report().splitlines() if "reset" in line]
    assert len(notes) == 1 and notes[0].endswith("fault: reset over HTTP"), notes  # one note for one reset
    assert broker.queues == {}
    assert "x" not in broker.exchanges and "amq.topic" in broker.exchanges
    assert broker.retained() == {}
    assert [c for c in broker.clients if c.listener != "management"] == []
    broker.declare_queue("fresh")
    broker.publish("", "fresh", b"not dropped")
    assert [m.body for m in broker.peek("fresh")] == [b"not dropped"]
    client.loop_stop()


def test_waiting_for_a_client_to_connect_subscribe_and_leave(broker: fakebroker.ThreadedBroker) -> None:
    answer: dict[str, requests.Response] = {}
    waiter = threading.Thread(target=lambda: answer.setdefault("r", ctl(
        broker, "POST", "/clients/wait", {"client_id": "late", "subscribed": "news/#", "timeout": 10})))
    waiter.start()
    client = device(broker, "late")
    client.subscribe("news/#", qos=1)
    waiter.join(10)
    assert answer["r"].status_code == 200
    assert answer["r"].json()["subscriptions"] == {"news/#": 1}
    client.loop_stop()
    client.disconnect()
    assert ctl(broker, "POST", "/clients/wait-disconnect", {"client_id": "late", "timeout": 5}).status_code == 204
    missing = ctl(broker, "POST", "/clients/wait", {"client_id": "never", "timeout": 0.1})
    assert missing.status_code == 408 and "never" in missing.json()["reason"]
    assert ctl(broker, "POST", "/clients/wait", {"timeout": 1}).status_code == 400


def test_the_traffic_report(broker: fakebroker.ThreadedBroker) -> None:
    broker.publish("amq.topic", "report.me", b"x")
    r = ctl(broker, "GET", "/report")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "report.me" in r.text


def test_bad_requests_say_what_is_wrong(broker: fakebroker.ThreadedBroker) -> None:
    for path, body in (("/messages/wait", {}), ("/clients/wait", {"client_id": "x"}),
                       ("/clients/wait-disconnect", {"client_id": "x"})):
        r = ctl(broker, "POST", path, {**body, "timeout": "soon"})
        assert (r.status_code, r.json()["reason"]) == (400, "timeout must be a number of seconds, not 'soon'")
        r = ctl(broker, "POST", path, {**body, "timeout": 3601})
        assert (r.status_code, r.json()["reason"]) == (400, "timeout must be between 0 and 3600 seconds")
    r = ctl(broker, "POST", "/messages/wait", {"count": 0})
    assert (r.status_code, r.json()["reason"]) == (400, "count must be at least 1")
    r = ctl(broker, "POST", "/faults/delay", {"count": 1})
    assert (r.status_code, r.json()["reason"]) == (400, "missing field 'seconds'")
    r = ctl(broker, "POST", "/faults/drop", {"colour": "red"})
    assert (r.status_code, r.json()["reason"]) == (400, "unknown criteria: colour")
    r = ctl(broker, "POST", "/clock/advance", {"seconds": "soon"})
    assert r.status_code == 400
    r = ctl(broker, "GET", "/messages?limit=x")
    assert (r.status_code, r.json()["reason"]) == (400, "limit must be an integer, not 'x'")
    assert ctl(broker, "POST", "/clients/nobody/stall").status_code == 404


def test_a_connection_is_named_by_its_id_too(broker: fakebroker.ThreadedBroker) -> None:
    client = device(broker, "by-id")
    [conn] = [c for c in ctl(broker, "GET", "/clients").json() if c["client_id"] == "by-id"]
    assert ctl(broker, "POST", f"/clients/%23{conn['id']}/disconnect").status_code == 204
    assert broker.clients.get("by-id") is None
    client.loop_stop()


def test_the_listener_health_check_fails_while_the_broker_refuses_connections(
        broker: fakebroker.ThreadedBroker) -> None:
    path = f"{broker.management_url}/api/health/checks/port-listener/{broker.mqtt.port}"
    assert requests.get(path, auth=AUTH, timeout=5).status_code == 200
    ctl(broker, "POST", "/refuse-connections")
    assert requests.get(path, auth=AUTH, timeout=5).status_code == 503
    ctl(broker, "DELETE", "/refuse-connections")
    assert requests.get(path, auth=AUTH, timeout=5).status_code == 200
