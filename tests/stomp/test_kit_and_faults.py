"""The shared STOMP test client (fakebroker.clients.stomp, the ``stomp_client`` fixture) and what the handle does to
STOMP connections: waits and assertions on destinations, the failure report, stall, restart, refused connections."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import fakebroker
from fakebroker import ThreadedBroker
from fakebroker.clients.stomp import StompClient, StompError


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_stomp_client_round_trip(stomp_client: Callable[..., StompClient], version: str) -> None:
    consumer = stomp_client(version=version, subscribe="/queue/work", ack="client-individual")
    producer = stomp_client(version=version)
    producer.send("/queue/work", "job", **{"content-type": "text/plain"})
    message = consumer.get()
    assert (message.destination, message.body, message.headers["content-type"]) == ("/queue/work", b"job",
                                                                                    "text/plain")
    consumer.ack(message)
    assert consumer.none_within(0.05)


def test_stomp_client_over_web_stomp(stomp_client: Callable[..., StompClient], fakebroker: ThreadedBroker) -> None:
    ws = stomp_client(websocket=True, subscribe="/topic/kit.#")
    fakebroker.publish("amq.topic", "kit.one", b"hi")
    assert ws.get().body == b"hi"


def test_stomp_client_reports_errors(stomp_client: Callable[..., StompClient]) -> None:
    client = stomp_client()
    with pytest.raises(StompError, match="Unknown destination"):
        client.send("/nowhere/x", "x")
    refused = stomp_client(connect=False, passcode="wrong")
    with pytest.raises(StompError, match="Bad CONNECT"):
        refused.connect()


def test_nack_requeues(stomp_client: Callable[..., StompClient], fakebroker: ThreadedBroker) -> None:
    fakebroker.declare_queue("n")
    client = stomp_client()
    client.subscribe("/amq/queue/n", ack="client-individual")
    fakebroker.publish("", "n", b"again")
    first = client.get()
    client.nack(first)
    second = client.get()
    assert (second.body, second.headers["redelivered"]) == (b"again", "true")


def test_waits_and_assertions_take_destinations(stomp_client: Callable[..., StompClient],
                                                fakebroker: ThreadedBroker) -> None:
    client = stomp_client(subscribe="/topic/orders.*")
    client.send("/topic/orders.created", "o1", receipt=False)
    entry = fakebroker.wait_for_message(destination="/topic/orders.*")
    assert entry.body == b"o1" and entry.protocol == "stomp"
    fakebroker.assert_published(1, destination="/topic/orders.#")
    fakebroker.assert_not_published(destination="/queue/orders")
    client.get()
    fakebroker.assert_delivered(client.connected_headers["session"], 1, destination="/topic/orders.created")
    with pytest.raises(AssertionError, match="destination"):
        fakebroker.assert_published(destination="/topic/invoices.*")


def test_failure_report_shows_stomp_traffic(stomp_client: Callable[..., StompClient],
                                            fakebroker: ThreadedBroker) -> None:
    client = stomp_client(subscribe="/topic/report.*")
    client.send("/topic/report.x", "seen in the report")
    client.get()
    report = fakebroker.traffic_report()
    session = client.connected_headers["session"]
    assert "stomp" in report and session in report
    assert "routing_key='report.x'" in report and "seen in the report" in report


def test_stall_and_resume(stomp_client: Callable[..., StompClient], fakebroker: ThreadedBroker) -> None:
    client = stomp_client(subscribe="/topic/stall")
    session = client.connected_headers["session"]
    fakebroker.stall(session)
    fakebroker.publish("amq.topic", "stall", b"held back")
    assert client.none_within(0.1)
    fakebroker.resume(session)
    assert client.get().body == b"held back"


def test_restart_keeps_durable_queues_and_drops_connections(stomp_client: Callable[..., StompClient],
                                                            fakebroker: ThreadedBroker) -> None:
    client = stomp_client()
    client.send("/queue/kept", "persistent", persistent="true")
    client.send("/queue/kept", "transient")
    fakebroker.restart()
    assert client.disconnected.wait(5)
    again = stomp_client(subscribe="/queue/kept")
    assert again.get().body == b"persistent"
    assert again.none_within(0.05)


def test_refused_connections(fakebroker: ThreadedBroker) -> None:
    import socket

    with fakebroker.refuse_connections(), socket.socket() as s:
        assert s.connect_ex(tuple(fakebroker.stomp)) != 0
    client = StompClient(fakebroker.stomp)
    try:
        assert client.connect()["version"] == "1.2"
    finally:
        client.close()


def test_heart_beat_expiry_on_the_clock(stomp_client: Callable[..., StompClient],
                                        fakebroker: ThreadedBroker) -> None:
    client = stomp_client(heartbeats=(5000, 0))
    fakebroker.clock.advance(15)
    assert client.disconnected.wait(5)
    assert not [c for c in fakebroker.clients if c.protocol == "stomp"]


@pytest.mark.parametrize("websocket", [False, True], ids=["tcp", "web-stomp"])
def test_closing_a_client_after_its_broker_stopped_raises_nothing(websocket: bool) -> None:
    # The stomp_client fixture closes its clients after the test's broker has stopped: stomp.py may not have
    # seen the close yet, and its DISCONNECT met a socket its receiver thread was closing (EBADF), now and then.
    for _ in range(10):
        broker = fakebroker.start()
        client = StompClient(broker.web_stomp_url if websocket else broker.stomp)
        client.connect()
        broker.stop()
        client.close()
        client.close()
