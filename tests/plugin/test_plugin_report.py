"""The "fakebroker traffic" section a failed test's report gets."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from kit.mqtt import connect, s
from kit.wait import wait_until

from fakebroker import ThreadedBroker

FAILING_APP = """
    import pytest

    def test_order_is_forwarded(fakebroker, mqtt_client):
        backend = mqtt_client("backend", broker=fakebroker, reconnect=True)
        backend.subscribe("orders/#", qos=1)
        shop = mqtt_client("shop", broker=fakebroker, reconnect=True, will=("shops/shop", b"offline", 1, False))
        shop.publish("orders/42", b'{"id": 42}', qos=1)
        assert backend.get().astuple()[1] == b'{"id": 42}'
        fakebroker.disconnect("shop")
        fakebroker.wait_for_message(topic="shops/shop")
        fakebroker.publish("amq.topic", "invoices.42", b"unroutable")
        assert fakebroker.messages.filter(topic="orders/#").bodies == [b"wrong"]

    def test_passes(fakebroker):
        fakebroker.publish("amq.topic", "a", b"quiet")
"""


def test_failed_test_report_shows_the_broker_traffic(app: pytest.Pytester) -> None:
    app.makepyfile(test_app=FAILING_APP)
    result = app.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*- fakebroker traffic -*",
        "broker mqtt=127.0.0.1:* web_mqtt=127.0.0.1:*; clock t=0.000 (VirtualClock)",
        "connections and faults:",
        "  t=0.000 opened conn#1 mqtt client_id='backend' user='guest' from 127.0.0.1:*",
        "  t=0.000 opened conn#2 mqtt client_id='shop' user='guest' from 127.0.0.1:*",
        "  t=0.000 fault: disconnect('shop')",
        "  t=0.000 closed conn#2 mqtt client_id='shop' *",
        "connected now:",
        "  conn#1 mqtt client_id='backend' * subscriptions={'orders/#': 1}",
        "queues:",
        "  mqtt-subscription-backendqos1 [durable auto-delete] ready=0 unacked=0 consumers=1 "
        "bound: amq.topic 'orders.#'",
        "messages (3):",
        "  #1 t=0.000 mqtt:shop -> exchange='amq.topic' routing_key='orders.42' body=b'{\"id\": 42}' "
        "-> mqtt-subscription-backendqos1; delivered to backend (via mqtt-subscription-backendqos1, acked)",
        "  #2 t=0.000 mqtt-will:shop -> exchange='amq.topic' routing_key='shops.shop' body=b'offline' -> unroutable",
        "  #3 t=0.000 api -> exchange='amq.topic' routing_key='invoices.42' body=b'unroutable' -> unroutable",
    ])
    # Only the failed test gets the section.
    assert result.stdout.str().count("fakebroker traffic") == 1
    assert "quiet" not in result.stdout.str()


def test_report_lists_the_last_messages_only(app: pytest.Pytester) -> None:
    app.makeini("""
        [pytest]
        fakebroker_report_messages = 5
    """)
    app.makepyfile(test_app="""
        def test_many(fakebroker):
            for n in range(12):
                fakebroker.publish("amq.topic", f"n.{n}", b"x")
            assert False
    """)
    result = app.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["messages (last 5 of 12):", "  #8 t=0.000 api *routing_key='n.7'*"])
    assert "routing_key='n.6'" not in result.stdout.str()


def test_report_section_can_be_turned_off(app: pytest.Pytester) -> None:
    app.makeini("""
        [pytest]
        fakebroker_report_messages = 0
    """)
    app.makepyfile(test_app="""
        def test_fails(fakebroker):
            assert False
    """)
    result = app.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "fakebroker traffic" not in result.stdout.str()


def test_every_broker_of_a_failed_test_is_reported_even_after_teardown_stopped_it(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="""
        import pytest

        @pytest.fixture
        def fails_at_teardown():
            yield
            raise RuntimeError("teardown went wrong")

        def test_two(fails_at_teardown, fakebroker, fakebroker_factory):
            fakebroker.publish("amq.topic", "first", b"1")
            fakebroker_factory().publish("amq.topic", "second", b"2")
    """)
    result = app.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*RuntimeError: teardown went wrong*",
        "*- fakebroker traffic (broker 1) -*", "*routing_key='first'*",
        "*- fakebroker traffic (broker 2) -*", "*routing_key='second'*",
    ])


def test_async_broker_is_reported_too(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="""
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_async(async_fakebroker):
            async_fakebroker.publish("amq.topic", "from.async", b"x")
            assert len(async_fakebroker.messages) == 0
    """)
    result = app.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- fakebroker traffic -*", "*routing_key='from.async'*"])


def test_report_marks_redeliveries_and_how_each_delivery_was_settled(fakebroker: ThreadedBroker,
                                                                      mqtt_client: Any) -> None:
    fakebroker.declare_queue("work")
    fakebroker.publish("", "work", b"job")
    first = fakebroker.get("work", auto_ack=False)
    assert first is not None
    fakebroker.nack(first)  # back to the queue: the next delivery is a redelivery
    again = fakebroker.get("work", auto_ack=False)
    assert again is not None and again.redelivered
    fakebroker.ack(again)
    (entry,) = fakebroker.messages
    assert entry.deliveries == [("work", "python-api"), ("work", "python-api")]
    assert [(d.redelivered, d.outcome) for d in entry.deliveries] == [(False, "requeue"), (True, "ack")]
    report = fakebroker.traffic_report()
    assert ("delivered to python-api (via work, requeued), python-api (via work, REDELIVERED, acked)"
            in report)

    # Over MQTT: an unacknowledged QoS 1 delivery comes back after the restart, marked as a duplicate.
    worker = mqtt_client("worker", clean_session=False, subscribe="jobs/#", qos=1, reconnect=True)
    worker.paho.manual_ack_set(True)  # the application takes the message but never acknowledges it
    fakebroker.publish("amq.topic", "jobs.1", b"at least once", {"delivery_mode": 2})
    fakebroker.wait_for_message(routing_key="jobs.1", delivered_to="worker")
    fakebroker.restart()
    fakebroker.wait_for_messages(1, routing_key="jobs.1", delivered_to="worker")
    mqtt_entry = fakebroker.messages.filter(routing_key="jobs.1")[0]
    wait_until(lambda: len(mqtt_entry.deliveries) == 2, what="the redelivery after the restart")
    assert [d.redelivered for d in fakebroker.messages.filter(routing_key="jobs.1")[0].deliveries] == [False, True]
    assert "REDELIVERED" in fakebroker.traffic_report().split("jobs.1")[-1]



def _mqtt_connect(broker: ThreadedBroker, client_id: str) -> socket.socket:
    sock = socket.create_connection(tuple(broker.mqtt))
    sock.sendall(connect(payload=s(client_id)))
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    return sock


def _disconnect(sock: socket.socket) -> None:
    sock.sendall(b"\xe0\x00")
    sock.close()


def test_the_report_keeps_the_last_500_connection_events_oldest_first(fakebroker: ThreadedBroker) -> None:
    first = _mqtt_connect(fakebroker, "first")
    others = [_mqtt_connect(fakebroker, f"c{i}") for i in range(260)]
    for sock in others:
        _disconnect(sock)
    wait_until(lambda: fakebroker.clients.ids() == ["first"], what="the 260 to close")
    # Its "opened" event has left the report by now: its close must not touch the event that took its place.
    _disconnect(first)
    wait_until(lambda: not fakebroker.clients.ids(), what="the first to close")

    section = fakebroker.traffic_report().split("connections and faults:\n")[1].split("\nconnected now:")[0]
    events = [(line.split()[1], line.split("client_id=")[1].split()[0]) for line in section.splitlines()]
    # 261 opened and 261 closed: the oldest 22 (the first's "opened", c0 to c20's) are gone; the "opened" events
    # kept show the client id their CONNECT gave after the event. The 260 may close in any order.
    assert events[:239] == [("opened", f"'c{i}'") for i in range(21, 260)]
    assert sorted(events[239:-1]) == sorted(("closed", f"'c{i}'") for i in range(260))
    assert events[-1] == ("closed", "'first'")
