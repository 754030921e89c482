"""Fault injection through real paho-mqtt clients: disconnect, stall, refused connections, restart, and
dropped or delayed messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest

import fakebroker as fakebroker_module
from fakebroker import ThreadedBroker

Client = Callable[..., Any]  # the mqtt_client fixture (conftest.MqttClient)


def test_disconnect_drops_the_connection_and_the_will_fires(fakebroker: ThreadedBroker, mqtt_client: Client) -> None:
    watcher = mqtt_client("watcher", broker=fakebroker, reconnect=True)
    watcher.subscribe("status/#", qos=1)
    device = mqtt_client("device", broker=fakebroker, reconnect=True, will=("status/device", b"offline", 1, False))

    fakebroker.disconnect("device")

    assert device.wait_disconnected() is not None  # paho saw the TCP connection go, with no DISCONNECT from anyone
    will = fakebroker.wait_for_message(topic="status/device", delivered_to="watcher")
    assert will.protocol == "mqtt-will" and will.body == b"offline"
    assert watcher.get().astuple() == ("status/device", b"offline", 1)
    with pytest.raises(LookupError, match="no connected client 'nobody'"):
        fakebroker.disconnect("nobody")


@pytest.mark.parametrize("keepalive", [10, 60])
def test_stalled_client_keepalive_expires_and_the_will_fires(fakebroker: ThreadedBroker, mqtt_client: Client,
                                                             keepalive: int) -> None:
    # No keepalive: the clock will not drop it.
    watcher = mqtt_client("watcher", broker=fakebroker, reconnect=True, keepalive=0)
    watcher.subscribe("status/#", qos=1)
    mqtt_client("device", broker=fakebroker, reconnect=True, keepalive=keepalive,
                will=("status/device", b"lost", 1, False))

    fakebroker.stall("device")  # paho's PINGREQs are no longer read
    assert fakebroker.clients.get("device").stalled  # type: ignore[union-attr]
    fakebroker.clock.advance(keepalive * 1.5 - 0.1)
    assert "device" in fakebroker.clients.ids()
    fakebroker.assert_not_published(topic="status/device")

    fakebroker.clock.advance(0.1)  # 1.5 x keepalive after the last packet the broker read

    fakebroker.wait_for_message(topic="status/device", delivered_to="watcher")
    assert watcher.get().astuple() == ("status/device", b"lost", 1)
    assert "device" not in fakebroker.clients.ids() or not fakebroker.clients.get("device").stalled  # type: ignore[union-attr]


def test_stall_holds_both_directions_until_resume(fakebroker: ThreadedBroker, mqtt_client: Client) -> None:
    device = mqtt_client("device", broker=fakebroker, reconnect=True)
    device.subscribe("commands/#", qos=1)
    backend = mqtt_client("backend", broker=fakebroker, reconnect=True)
    backend.subscribe("telemetry/#", qos=1)

    fakebroker.stall("device")
    backend.publish("commands/reboot", b"now", qos=1)
    fakebroker.wait_for_message(topic="commands/reboot", delivered_to="device")  # routed and handed over...
    assert device.none_within(0.2)  # ...but not written to the device's socket
    device.publish("telemetry/temp", b"21", qos=0)  # written by paho, not read by the broker

    fakebroker.resume("device")

    assert device.get().astuple() == ("commands/reboot", b"now", 1)
    fakebroker.wait_for_message(topic="telemetry/temp", delivered_to="backend")
    assert backend.get().astuple() == ("telemetry/temp", b"21", 0)


def test_refuse_connections_refuses_new_clients_and_keeps_the_open_ones(fakebroker: ThreadedBroker,
                                                                         mqtt_client: Client) -> None:
    present = mqtt_client("present", broker=fakebroker, reconnect=True)
    present.subscribe("news", qos=1)
    newcomer = mqtt_client("newcomer", broker=fakebroker, reconnect=True, connect=False)
    address = fakebroker.mqtt

    with fakebroker.refuse_connections():
        with pytest.raises(ConnectionRefusedError):
            newcomer.paho.connect(*address)
        fakebroker.publish("amq.topic", "news", b"still here")
        assert present.get().astuple() == ("news", b"still here", 1)

    assert fakebroker.mqtt == address  # the same port again
    assert newcomer.connect()[0] is False
    assert sorted(fakebroker.clients.ids()) == ["newcomer", "present"]  # type: ignore[type-var]


def test_paho_reconnects_by_itself_once_the_broker_accepts_again(fakebroker: ThreadedBroker,
                                                                 mqtt_client: Client) -> None:
    device = mqtt_client("device", broker=fakebroker, reconnect=True)
    with fakebroker.refuse_connections():
        fakebroker.disconnect("device")
        device.wait_disconnected()
    # paho's loop thread retried while refused and now gets in.
    assert device.connack()[0] is False
    assert fakebroker.clients.ids() == ["device"]


def test_restart_resumes_a_persistent_session_with_the_messages_queued_meanwhile(
        fakebroker: ThreadedBroker, mqtt_client: Client) -> None:
    worker = mqtt_client("worker", broker=fakebroker, reconnect=True, clean_session=False)
    worker.subscribe("jobs/#", qos=1)
    producer = mqtt_client("producer", broker=fakebroker, reconnect=True)

    with fakebroker.refuse_connections():
        fakebroker.restart()  # both connections drop; the broker stays down until the block ends
        assert fakebroker.clients == []
        assert worker.wait_disconnected() is not None
        fakebroker.publish("amq.topic", "jobs.1", b"queued while down", {"delivery_mode": 2})
        assert fakebroker.queues["mqtt-subscription-workerqos1"].messages == 1

    assert worker.connack()[0] is True  # paho reconnected by itself; session_present
    assert worker.get().astuple() == ("jobs/1", b"queued while down", 1)
    assert producer.connack()[0] is False
    producer.publish("jobs/2", b"after the restart", qos=1)
    assert worker.get().astuple() == ("jobs/2", b"after the restart", 1)


def test_restart_keeps_persistent_messages_of_an_offline_session_and_loses_transient_ones(
        fakebroker: ThreadedBroker, mqtt_client: Client) -> None:
    worker = mqtt_client("worker", broker=fakebroker, reconnect=True, clean_session=False)
    worker.subscribe("jobs/#", qos=1)
    worker.close()  # a clean DISCONNECT: offline, session kept
    producer = mqtt_client("producer", broker=fakebroker, reconnect=True)
    producer.publish("jobs/kept", b"qos1", qos=1)  # delivery_mode 2: persistent
    producer.publish("jobs/lost", b"qos0", qos=0)  # delivery_mode 1: transient
    fakebroker.wait_for_messages(2, topic="jobs/#")
    producer.publish("jobs/retained", b"last value", qos=1, retain=True)

    fakebroker.restart()

    assert [m.body for m in fakebroker.peek("mqtt-subscription-workerqos1")] == [b"qos1", b"last value"]
    assert fakebroker.retained() == {"jobs/retained": b"last value"}
    again = mqtt_client("worker", broker=fakebroker, reconnect=True, clean_session=False, connect=False)
    assert again.connect()[0] is True
    assert [again.get().astuple()[:2] for _ in range(2)] == [("jobs/kept", b"qos1"), ("jobs/retained", b"last value")]


def test_restart_publishes_no_will(fakebroker: ThreadedBroker, mqtt_client: Client) -> None:
    # RabbitMQ 3.10 (`rabbitmqctl stop_app; start_app`) closes MQTT connections without publishing their wills.
    watcher = mqtt_client("watcher", broker=fakebroker, reconnect=True, clean_session=False)
    watcher.subscribe("status/#", qos=1)
    mqtt_client("device", broker=fakebroker, reconnect=True, will=("status/device", b"offline", 1, False))

    fakebroker.restart()

    assert watcher.connack()[0] is True
    fakebroker.assert_not_published(protocol="mqtt-will")
    assert fakebroker.queues["mqtt-subscription-watcherqos1"].messages == 0


def test_restart_keeps_durable_things_and_drops_transient_ones(fakebroker: ThreadedBroker) -> None:
    fakebroker.declare_exchange("events", "topic", durable=True)
    fakebroker.declare_exchange("scratch", "fanout")
    fakebroker.declare_queue("audit", durable=True, arguments={"x-expires": 60_000})
    fakebroker.declare_queue("cache")
    fakebroker.declare_queue("private", durable=True, exclusive=True)
    fakebroker.bind("audit", "events", "#")
    fakebroker.bind("audit", "scratch")
    fakebroker.bind("cache", "events", "#")
    fakebroker.publish("events", "a", b"persistent", {"delivery_mode": 2})
    fakebroker.publish("events", "b", b"transient")
    fakebroker.clock.advance(50)

    fakebroker.restart()

    assert set(fakebroker.queues) == {"audit"}
    assert {"events", "amq.topic"} <= set(fakebroker.exchanges) and "scratch" not in fakebroker.exchanges
    assert [(b.source, b.destination, b.routing_key) for b in fakebroker.bindings] == [
        ("", "audit", "audit"), ("events", "audit", "#")]
    assert [m.body for m in fakebroker.peek("audit")] == [b"persistent"]
    fakebroker.clock.advance(50)  # x-expires counts again from the restart: 50 of 60 s
    assert "audit" in fakebroker.queues
    fakebroker.clock.advance(10)
    assert "audit" not in fakebroker.queues


def test_drop_next_drops_only_the_next_matching_messages(fakebroker: ThreadedBroker, mqtt_client: Client) -> None:
    sub = mqtt_client("sub", broker=fakebroker, reconnect=True)
    sub.subscribe("sensors/#", qos=1)
    pub = mqtt_client("pub", broker=fakebroker, reconnect=True)
    fault = fakebroker.drop_next(2, topic="sensors/+/temp")

    for payload in (b"1", b"2", b"3"):
        pub.publish("sensors/kitchen/temp", payload, qos=1)
    pub.publish("sensors/kitchen/humidity", b"55", qos=1)

    assert [sub.get().astuple()[1] for _ in range(2)] == [b"3", b"55"]
    assert [m.body for m in fault.matched] == [b"1", b"2"] and fault.remaining == 0
    dropped = fakebroker.messages.filter(fault="dropped")
    assert dropped.bodies == [b"1", b"2"] and not any(m.routed for m in dropped)
    fakebroker.assert_published(count=3, topic="sensors/kitchen/temp")  # the publisher did publish them


def test_delay_next_routes_when_the_clock_gets_there(fakebroker: ThreadedBroker, mqtt_client: Client) -> None:
    pub = mqtt_client("pub", broker=fakebroker, reconnect=True)
    fakebroker.delay_next(1, 5.0, routing_key="orders.new")

    pub.publish("orders/new", b"late", qos=1)  # PUBACKed: the broker has it
    sub = mqtt_client("sub", broker=fakebroker, reconnect=True)
    sub.subscribe("orders/#", qos=1)  # subscribed after the publish, before the message is routed
    (entry,) = fakebroker.messages.filter(fault="delayed")
    assert entry.pending and entry.delayed_until == 5.0
    fakebroker.clock.advance(4.9)
    assert entry.pending and sub.none_within(0.05)

    fakebroker.clock.advance(0.1)

    assert sub.get().astuple() == ("orders/new", b"late", 1)
    routed = fakebroker.wait_for_message(fault="delayed", delivered_to="sub")
    assert not routed.pending and routed.queues == ("mqtt-subscription-subqos1",)


def test_message_faults_can_be_cancelled_and_reject_criteria_decided_after_routing(
        fakebroker: ThreadedBroker) -> None:
    fault = fakebroker.drop_next(1, topic="a")
    fault.cancel()
    assert fakebroker.publish("amq.topic", "a", b"x").fault is None
    with pytest.raises(TypeError, match="unknown message criteria delivered_to"):
        fakebroker.drop_next(1, delivered_to="someone")
    with pytest.raises(ValueError, match="at least 1"):
        fakebroker.drop_next(0)


def test_a_reconnecting_paho_client_survives_a_plain_restart(fakebroker: ThreadedBroker,
                                                             mqtt_client: Client) -> None:
    device = mqtt_client("device", broker=fakebroker, reconnect=True)
    device.subscribe("commands/#", qos=1)
    fakebroker.restart()
    assert device.connack()[0] is False  # a clean session: nothing survived, so subscribe again
    assert "mqtt-subscription-deviceqos1" not in fakebroker.queues
    device.subscribe("commands/#", qos=1)
    fakebroker.publish("amq.topic", "commands.ping", b"?")
    assert device.get().astuple() == ("commands/ping", b"?", 1)


def test_paho_sees_the_refused_connection_as_an_error_code(fakebroker: ThreadedBroker) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw")
    with fakebroker.refuse_connections(), pytest.raises(ConnectionRefusedError):
        client.connect(*fakebroker.mqtt)
    client.connect(*fakebroker.mqtt)
    client.disconnect()


def test_a_failing_fault_predicate_is_reported_and_spares_the_publisher(mqtt_client: Client) -> None:
    # Not the fixture: it would (rightly) fail this test at teardown for the recorded error.
    with fakebroker_module.start() as broker:
        sub = mqtt_client("sub", broker=broker, reconnect=True)
        sub.subscribe("t/#", qos=1)
        pub = mqtt_client("pub", broker=broker, reconnect=True)

        def explode(body: bytes) -> bool:
            raise ZeroDivisionError("bug in the test's predicate")

        broker.drop_next(1, topic="t/a", payload=explode)
        pub.publish("t/a", b"still delivered", qos=1)

        assert sub.get().astuple()[1] == b"still delivered"
        assert [type(e) for e in broker.callback_errors] == [ZeroDivisionError]
        assert "pub" in broker.clients.ids()


def test_faults_address_a_connection_by_id_or_client_info(fakebroker: ThreadedBroker,
                                                          mqtt_client: Callable[..., Any]) -> None:
    first = mqtt_client("by-id", broker=fakebroker, reconnect=True)
    second = mqtt_client("by-info", broker=fakebroker, reconnect=True)
    by_id = fakebroker.clients.get("by-id")
    by_info = fakebroker.clients.get("by-info")
    assert by_id is not None and by_info is not None
    fakebroker.disconnect(by_id.id)
    fakebroker.disconnect(by_info)
    assert first.wait_disconnected() is not None and second.wait_disconnected() is not None
    assert fakebroker.clients == []
    with pytest.raises(LookupError, match=r"no connected client 999.*connected \(id, protocol, client id\)"):
        fakebroker.stall(999)
    with pytest.raises(TypeError, match="client id, connection id or ClientInfo"):
        fakebroker.stall(True)  # type: ignore[arg-type]
