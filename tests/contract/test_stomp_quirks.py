"""STOMP contract: RabbitMQ 3.10's less obvious choices, each observed on the real node and matched."""

from __future__ import annotations

import pytest
from contractlib import Backend
from kit.stomp import as_tuple, error_frame

pytestmark = pytest.mark.rabbitmq


def test_send_to_a_new_queue_with_persistent_false_declares_it_exclusive(backend: Backend) -> None:
    # build_params reads "persistent" as the queue's durability: false makes an exclusive, auto-delete queue.
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/queue/pf-queue", "persistent": "false", "receipt": "r"}, "x")
    c.receipt("r")
    q = backend.queue("pf-queue")
    assert q is not None and q.flags == (False, True, True)


def test_send_to_a_queue_with_persistent_1_is_a_processing_error(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/queue/p1-queue", "persistent": "1"}, "x")
    assert as_tuple(c.recv()) == error_frame("Processing error", "Processing error")
    c.expect_open()


def test_prefetch_count_is_the_connections(backend: Backend) -> None:
    # SUBSCRIBE's prefetch-count is basic.qos on the connection's one channel: later subscriptions get it too.
    backend.declare_queue("pf-a")
    backend.declare_queue("pf-b")
    for i in range(3):
        backend.publish("", "pf-a", b"a%d" % i)
        backend.publish("", "pf-b", b"b%d" % i)
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/amq/queue/pf-a", "id": "a", "ack": "client-individual",
                         "prefetch-count": "1", "receipt": "s1"})
    c.receipt("s1")
    c.send("SUBSCRIBE", {"destination": "/amq/queue/pf-b", "id": "b", "ack": "client-individual", "receipt": "s2"})
    c.receipt("s2")
    got = [c.recv_command("MESSAGE").body for _ in range(2)]
    c.expect_nothing()
    assert sorted(got) == [b"a0", b"b0"]


def test_stomp_10_unsubscribe_by_destination(backend: Backend) -> None:
    c = backend.stomp_client().connected("1.0")
    c.send("SUBSCRIBE", {"destination": "/topic/ten.u", "receipt": "s"})
    c.receipt("s")
    c.send("UNSUBSCRIBE", {"destination": "/topic/ten.u", "receipt": "u"})
    c.receipt("u")
    backend.publish("amq.topic", "ten.u", b"gone")
    c.expect_nothing()


def test_ack_committed_in_a_transaction(backend: Backend) -> None:
    backend.declare_queue("txack")
    backend.publish("", "txack", b"one")
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/amq/queue/txack", "id": "t", "ack": "client-individual"})
    message = c.recv_command("MESSAGE")
    c.send("BEGIN", {"transaction": "tx"})
    c.send("ACK", {"id": message.get("ack"), "transaction": "tx"})
    c.send("COMMIT", {"transaction": "tx", "receipt": "c"})
    c.receipt("c")
    c.close()
    again = backend.stomp_client().connected()
    again.send("SUBSCRIBE", {"destination": "/amq/queue/txack", "id": "t2"})
    again.expect_nothing()


def test_durable_exchange_subscription_is_named_after_the_pattern(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/exchange/amq.topic/ed.#", "id": "ed", "durable": "true",
                         "auto-delete": "false", "receipt": "s"})
    c.receipt("s")
    from fakebroker.protocols.stomp.destinations import subscription_queue_name

    q = backend.queue(subscription_queue_name("ed.#", "ed"))
    assert q is not None and q.flags == (True, False, False)
    backend.delete_queue(subscription_queue_name("ed.#", "ed"))


@pytest.mark.parametrize(("header", "value"), [("heart-beat", "x"), ("heart-beat", "1000, 1000")])
def test_bad_heart_beat_header(backend: Backend, header: str, value: str) -> None:
    c = backend.stomp_client()
    assert as_tuple(c.connect("1.2", **{header.replace("-", "_"): value})) == error_frame("Processing error",
                                                                                          "Processing error")
    assert c.connect("1.2").command == "CONNECTED"
