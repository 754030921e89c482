"""Inspecting the fixture's broker: the message log and its filters, waits, assertion helpers, live views and
event hooks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fakebroker import LoggedMessage, MessageTimeout, ThreadedBroker

Client = Callable[..., Any]  # the mqtt_client fixture (conftest.MqttClient)


@pytest.fixture
def traffic(fakebroker: ThreadedBroker, mqtt_client: Client) -> ThreadedBroker:
    """A broker that has seen: two MQTT publishes (one delivered to 'app'), one API publish, one unroutable."""
    app = mqtt_client("app", broker=fakebroker, reconnect=True)
    app.subscribe("sensors/+/temp", qos=1)
    sensor = mqtt_client("sensor", broker=fakebroker, reconnect=True)
    sensor.publish("sensors/kitchen/temp", b"21.5", qos=1)
    sensor.publish("sensors/kitchen/humidity", b"40", qos=0)
    fakebroker.declare_queue("audit")
    fakebroker.bind("audit", "amq.topic", "#")
    fakebroker.publish("amq.topic", "sensors.cellar.temp", "12.0", {"headers": {"unit": "C", "site": "home"}})
    fakebroker.publish("amq.direct", "nobody", b"lost")
    fakebroker.wait_for_messages(4)
    app.get().astuple()
    app.get().astuple()
    # paho sends each PUBACK after its message callback, so get() can return before the broker has the ack.
    deadline = time.monotonic() + 5
    while fakebroker.queues["mqtt-subscription-appqos1"].unacked and time.monotonic() < deadline:
        time.sleep(0.005)
    return fakebroker


@pytest.mark.parametrize(("criteria", "bodies"), [
    ({}, [b"21.5", b"40", b"12.0", b"lost"]),
    ({"topic": "sensors/#"}, [b"21.5", b"40", b"12.0"]),
    ({"topic": "sensors/+/temp"}, [b"21.5", b"12.0"]),
    ({"topic": "sensors/kitchen/+"}, [b"21.5", b"40"]),
    ({"routing_key": "sensors.kitchen.humidity"}, [b"40"]),
    ({"exchange": "amq.direct"}, [b"lost"]),
    ({"queue": "audit"}, [b"12.0"]),
    ({"queue": "mqtt-subscription-appqos1"}, [b"21.5", b"12.0"]),
    ({"protocol": "api"}, [b"12.0", b"lost"]),
    ({"client_id": "sensor"}, [b"21.5", b"40"]),
    ({"payload": b"40"}, [b"40"]),
    ({"body": "12.0"}, [b"12.0"]),
    ({"payload": lambda body: body.startswith(b"1")}, [b"12.0"]),
    ({"headers": {"unit": "C"}}, [b"12.0"]),
    ({"headers": {"x-mqtt-publish-qos": 0}}, [b"40"]),
    ({"delivered_to": "app"}, [b"21.5", b"12.0"]),
    ({"routed": False}, [b"40", b"lost"]),
    ({"fault": None, "vhost": "/"}, [b"21.5", b"40", b"12.0", b"lost"]),
    ({"topic": "sensors/#", "protocol": "mqtt", "payload": b"21.5"}, [b"21.5"]),
])
def test_message_log_filters(traffic: ThreadedBroker, criteria: dict[str, Any], bodies: list[bytes]) -> None:
    assert traffic.messages.filter(**criteria).bodies == bodies


def test_log_entries_say_where_a_message_went(traffic: ThreadedBroker) -> None:
    entry = traffic.messages.filter(routing_key="sensors.cellar.temp")[0]
    assert entry.queues == ("audit", "mqtt-subscription-appqos1")
    assert entry.deliveries == [("mqtt-subscription-appqos1", "app")]
    assert entry.topic == "sensors/cellar/temp" and entry.headers == {"unit": "C", "site": "home"}
    assert traffic.messages[-1].routed is False
    with pytest.raises(TypeError, match="unknown message criteria colour"):
        traffic.messages.filter(colour="red")


def test_wait_for_message_returns_at_once_for_a_message_already_routed(traffic: ThreadedBroker) -> None:
    entry = traffic.wait_for_message(topic="sensors/+/temp", payload=b"12.0", timeout=0.01)
    assert isinstance(entry, LoggedMessage) and entry.protocol == "api"


def test_wait_for_message_waits_for_a_message_still_to_come(fakebroker: ThreadedBroker,
                                                            mqtt_client: Client) -> None:
    app = mqtt_client("app", broker=fakebroker, reconnect=True)
    app.subscribe("jobs/#", qos=1)
    worker = mqtt_client("worker", broker=fakebroker, reconnect=True)
    started = threading.Event()
    fakebroker.on("connect", lambda conn: None)  # unrelated hooks do not disturb the wait
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: (started.set(), fakebroker.wait_for_messages(
            2, topic="jobs/#", delivered_to="app"))[1])
        started.wait()
        worker.publish("jobs/1", b"a", qos=1)
        worker.publish("jobs/2", b"b", qos=1)
        assert future.result(timeout=5).bodies == [b"a", b"b"]
    assert [app.get().astuple()[1] for _ in range(2)] == [b"a", b"b"]


def test_wait_timeout_lists_near_misses(traffic: ThreadedBroker) -> None:
    with pytest.raises(MessageTimeout) as info:
        traffic.wait_for_message(topic="sensors/+/temp", payload=b"99", timeout=0.05)
    assert isinstance(info.value, AssertionError) and isinstance(info.value, TimeoutError)
    assert str(info.value).splitlines()[:6] == [
        "timed out after 0.05 s waiting for a message matching topic='sensors/+/temp', payload=b'99'; 0 matched",
        "Near misses (4 of 4 non-matching messages, closest first):",
        "  #3 t=0.000 api -> exchange='amq.topic' routing_key='sensors.cellar.temp' body=b'12.0' -> audit, "
        "mqtt-subscription-appqos1; delivered to app (via mqtt-subscription-appqos1, acked)",
        "      - payload: expected b'99', got b'12.0'",
        "  #1 t=0.000 mqtt:sensor -> exchange='amq.topic' routing_key='sensors.kitchen.temp' body=b'21.5' -> "
        "mqtt-subscription-appqos1; delivered to app (via mqtt-subscription-appqos1, acked)",
        "      - payload: expected b'99', got b'21.5'",
    ]
    assert "      - topic: 'sensors/+/temp' does not match 'sensors/kitchen/humidity'" in str(info.value)


def test_wait_for_messages_reports_how_many_matched(traffic: ThreadedBroker) -> None:
    with pytest.raises(AssertionError, match=r"(?s)waiting for 3 messages matching delivered_to='app'; "
                                             r"2 matched:\n  #1 .*\n  #3 .*Near misses"):
        traffic.wait_for_messages(3, delivered_to="app", timeout=0.01)


def test_assert_published(traffic: ThreadedBroker) -> None:
    assert traffic.assert_published(topic="sensors/#", client_id="sensor").bodies == [b"21.5", b"40"]
    assert len(traffic.assert_published(count=2, topic="sensors/+/temp")) == 2
    with pytest.raises(AssertionError) as info:
        traffic.assert_published(topic="sensors/cellar/temp", payload="13.0")
    assert str(info.value).splitlines()[:4] == [
        "expected a message published matching topic='sensors/cellar/temp', payload='13.0', found 0",
        "Near misses (4 of 4 non-matching messages, closest first):",
        "  #3 t=0.000 api -> exchange='amq.topic' routing_key='sensors.cellar.temp' body=b'12.0' -> audit, "
        "mqtt-subscription-appqos1; delivered to app (via mqtt-subscription-appqos1, acked)",
        "      - payload: expected '13.0', got b'12.0'",
    ]
    with pytest.raises(AssertionError, match=r"expected 1 message\(s\) published matching topic='sensors/#', found 3:"
                                             r"\n  #1 .*\n  #2 .*\n  #3 .*$"):
        traffic.assert_published(count=1, topic="sensors/#")


def test_assert_not_published_lists_the_offenders(traffic: ThreadedBroker) -> None:
    traffic.assert_not_published(topic="alarms/#")
    with pytest.raises(AssertionError) as info:
        traffic.assert_not_published(routed=False)
    assert str(info.value).splitlines() == [
        "expected 0 message(s) published matching routed=False, found 2:",
        "  #2 t=0.000 mqtt:sensor -> exchange='amq.topic' routing_key='sensors.kitchen.humidity' body=b'40' "
        "-> unroutable",
        "  #4 t=0.000 api -> exchange='amq.direct' routing_key='nobody' body=b'lost' -> unroutable",
    ]


def test_assert_delivered(traffic: ThreadedBroker) -> None:
    assert traffic.assert_delivered("app", count=2).bodies == [b"21.5", b"12.0"]
    with pytest.raises(AssertionError) as info:
        traffic.assert_delivered("app", payload=b"40")
    text = str(info.value)
    assert text.startswith("expected a message delivered to 'app' matching payload=b'40', delivered_to='app', "
                           "found 0\nNear misses")
    assert "      - delivered_to: expected 'app', got []" in text


def test_assertion_failures_read_like_pytest_ones(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="""
        def test_alert(fakebroker):
            fakebroker.publish("amq.topic", "alerts.fire", b"kitchen")
            fakebroker.assert_published(topic="alerts/flood")
    """)
    result = app.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        '>       fakebroker.assert_published(topic="alerts/flood")',
        "E       AssertionError: expected a message published matching topic='alerts/flood', found 0",
        "E       Near misses (1 of 1 non-matching messages, closest first):",
        "E         #1 t=0.000 api -> exchange='amq.topic' routing_key='alerts.fire' body=b'kitchen' -> unroutable",
        "E             - topic: 'alerts/flood' does not match 'alerts/fire'",
    ])
    assert "facade.py" not in result.stdout.str()  # the helper's own frames are hidden


def test_live_views(fakebroker: ThreadedBroker, mqtt_client: Client) -> None:
    device = mqtt_client("device", broker=fakebroker, reconnect=True, keepalive=30,
                         will=("status/device", b"gone", 1, True))
    device.subscribe("cmd/#", qos=0)
    device.subscribe("cfg/+", qos=1)
    fakebroker.publish("amq.topic", "cfg.x", b"", {"delivery_mode": 2})  # delivered: not in the queue
    fakebroker.declare_queue("backlog", arguments={"x-max-length": 5})
    fakebroker.publish("", "backlog", b"one")
    fakebroker.publish("", "backlog", b"two")

    client = fakebroker.clients.get("device")
    assert client is not None and client.protocol == "mqtt" and client.user == "guest"
    assert client.subscriptions == {"cmd/#": 0, "cfg/+": 1}
    assert client.will == {"topic": "status/device", "payload": b"gone", "qos": 1, "retain": True}
    assert client.keepalive == 30 and client.clean_session is True and not client.stalled
    assert [m.body for m in fakebroker.peek("backlog")] == [b"one", b"two"]
    assert fakebroker.queues["backlog"].messages == 2  # peek did not consume
    assert fakebroker.queues["backlog"].arguments == {"x-max-length": 5}
    assert fakebroker.queues["mqtt-subscription-deviceqos0"].consumers == 1
    assert {(b.source, b.destination, b.routing_key) for b in fakebroker.bindings} >= {
        ("amq.topic", "mqtt-subscription-deviceqos0", "cmd.#"),
        ("amq.topic", "mqtt-subscription-deviceqos1", "cfg.*"),
        ("", "backlog", "backlog"),
    }
    assert device.get().astuple()[0] == "cfg/x"


def test_event_hooks_run_on_the_broker_thread(fakebroker: ThreadedBroker, mqtt_client: Client) -> None:
    seen: list[tuple[str, Any, bool]] = []
    lock = threading.Lock()

    def record(event: str) -> Callable[..., None]:
        def hook(*args: Any) -> None:
            with lock:
                seen.append((event, args, threading.current_thread() is fakebroker.thread))
        return hook

    removers = [fakebroker.on(event, record(event)) for event in ("publish", "route", "deliver", "connect",
                                                                  "disconnect")]
    client = mqtt_client("c1", broker=fakebroker, reconnect=True)
    client.subscribe("t", qos=1)
    client.publish("t", b"x", qos=1)
    fakebroker.wait_for_message(delivered_to="c1")
    gone = threading.Event()
    fakebroker.on("disconnect", lambda conn: gone.set())
    client.close()
    assert gone.wait(3)
    fakebroker.publish("amq.topic", "t", b"y")  # after the disconnect: no deliver event
    for remove in removers:
        remove()
    fakebroker.publish("amq.topic", "t", b"unheard")

    with lock:
        events = [event for event, _, _ in seen]
        assert all(on_broker_thread for _, _, on_broker_thread in seen)
    assert events[0] == "connect" and events[-3:] == ["disconnect", "publish", "route"]
    assert events.count("publish") == 2 and events.count("deliver") == 1
    deliver = next(args for event, args, _ in seen if event == "deliver")
    assert deliver[0].body == b"x" and deliver[1:] == ("mqtt-subscription-c1qos1", "c1")
    connect = next(args for event, args, _ in seen if event == "connect")
    assert connect[0].protocol == "mqtt" and connect[0].client_id == "c1"


def test_unknown_event_is_refused(fakebroker: ThreadedBroker) -> None:
    with pytest.raises(ValueError, match="unknown event 'published'"):
        fakebroker.on("published", print)


def test_the_log_and_report_are_readable_after_stop(fakebroker_factory: Callable[..., ThreadedBroker]) -> None:
    broker = fakebroker_factory()
    broker.publish("amq.topic", "a", b"before stop")
    broker.stop()
    assert broker.messages.bodies == [b"before stop"]
    broker.assert_published(payload=b"before stop")
    assert "routing_key='a' body=b'before stop'" in broker.traffic_report()
    assert not broker.thread.is_alive()  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="stopped"):
        broker.publish("amq.topic", "a", b"after")
