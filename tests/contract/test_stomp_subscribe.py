"""STOMP contract: SUBSCRIBE queues and their names, UNSUBSCRIBE, acknowledgements, transactions, receipts,
reply queues."""

from __future__ import annotations

import re

import pytest
from contractlib import Backend
from kit.stomp import as_tuple, error_frame

pytestmark = pytest.mark.rabbitmq
SESSION = r"session-[A-Za-z0-9_-]{22}"
GENERATED = r"stomp-subscription-[A-Za-z0-9_-]{22}"


def _subscription_queues(backend: Backend) -> dict[str, tuple[bool, bool, bool]]:
    return {n: q.flags for n, q in backend.queues().items() if n.startswith("stomp-subscription-")}


@pytest.mark.parametrize(("destination", "headers", "flags", "binding"), [
    ("/topic/a.*", {}, (False, True, False), ("amq.topic", "a.*")),
    ("/exchange/amq.topic/a.#", {}, (False, True, False), ("amq.topic", "a.#")),
    ("/exchange/amq.direct/dkey", {}, (False, True, False), ("amq.direct", "dkey")),
    ("/exchange/amq.fanout", {}, (False, True, False), ("amq.fanout", "")),
    ("/topic/p.key", {"persistent": "true"}, (True, True, False), ("amq.topic", "p.key")),
    ("/topic/ex.key", {"exclusive": "true"}, (False, True, True), ("amq.topic", "ex.key")),
])
def test_subscription_queue(backend: Backend, destination: str, headers: dict[str, str],
                            flags: tuple[bool, bool, bool], binding: tuple[str, str]) -> None:
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": destination, "id": "s1", "receipt": "s", **headers})
    c.receipt("s")
    queues = _subscription_queues(backend)
    [(name, got_flags)] = queues.items()
    assert re.fullmatch(GENERATED, name)
    assert got_flags == flags
    assert backend.bindings(name) == [binding]
    c.send("DISCONNECT", {"receipt": "d"})
    c.expect_closed()
    if not backend.is_fake:
        import rabbitmq

        rabbitmq.wait_for(lambda: not _subscription_queues(backend), timeout=5)
    assert _subscription_queues(backend) == {}


def test_durable_topic_subscription(backend: Backend) -> None:
    name = "stomp-subscription-PxG5A_uwZegilUsaUmzkSQ"  # md5 of term_to_binary({"d.key", "s-durable"})
    headers = {"destination": "/topic/d.key", "id": "s-durable", "durable": "true", "auto-delete": "false"}
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {**headers, "receipt": "s"})
    c.receipt("s")
    assert _subscription_queues(backend) == {name: (True, False, False)}
    c.send("DISCONNECT", {"receipt": "d"})
    c.expect_closed()
    backend.publish("amq.topic", "d.key", b"while away")
    c2 = backend.stomp_client().connected()
    c2.send("SUBSCRIBE", headers)
    assert c2.recv_command("MESSAGE").body == b"while away"
    c2.send("UNSUBSCRIBE", {"id": "s-durable", "durable": "true", "receipt": "u"})
    c2.receipt("u")
    assert backend.queue(name) is None


def test_queue_subscription_with_arguments(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/queue/argq", "id": "1", "x-max-length": "10", "x-message-ttl": "60000",
                         "x-queue-type": "classic", "receipt": "s"})
    c.receipt("s")
    q = backend.queue("argq")
    assert q is not None and q.flags == (True, False, False)
    assert q.arguments == {"x-max-length": 10, "x-message-ttl": 60000, "x-queue-type": "classic"}


def test_x_queue_name(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/topic/xq", "id": "xq", "x-queue-name": "my-named-sub", "receipt": "s"})
    c.receipt("s")
    q = backend.queue("my-named-sub")
    assert q is not None and q.flags == (False, True, False)


@pytest.mark.parametrize(("headers", "message", "body"), [
    ({"destination": "/temp-queue/tq", "id": "t"}, "Invalid destination",
     "'/temp-queue/tq' is not a valid destination for 'SUBSCRIBE'\n"),
    ({"destination": "/topic/d", "durable": "true"}, "Missing Header",
     "Header 'id' is required for durable subscriptions"),
])
def test_subscribe_errors_keep_the_connection(backend: Backend, headers: dict[str, str], message: str,
                                              body: str) -> None:
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", headers)
    assert as_tuple(c.recv()) == error_frame(message, body)
    c.expect_open()


def test_subscribe_to_a_missing_queue_closes(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/amq/queue/missing-q", "id": "m"})
    assert [as_tuple(f) for f in c.expect_closed()] == [
        error_frame("not_found", f"NOT_FOUND - no queue 'missing-q' in vhost '{backend.vhost}'")]


def test_duplicate_subscription_id_closes(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/topic/a", "id": "dup"})
    c.send("SUBSCRIBE", {"destination": "/topic/b", "id": "dup"})
    assert [as_tuple(f) for f in c.expect_closed()] == [
        error_frame("Duplicated subscription identifier", "A subscription identified by 'T_dup' already exists.")]


def test_unsubscribe(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("UNSUBSCRIBE", {"id": "nope"})
    assert as_tuple(c.recv()) == error_frame(
        "No subscription found",
        "UNSUBSCRIBE must refer to an existing subscription.\nSubscription to \"id='nope'\" not found.\n")
    c.send("SUBSCRIBE", {"destination": "/topic/u", "id": "u"})
    c.send("UNSUBSCRIBE", {"id": "u", "receipt": "r"})
    c.receipt("r")
    backend.publish("amq.topic", "u", b"gone")
    c.expect_nothing()
    assert _subscription_queues(backend) == {}


def test_stomp_10_subscription_without_id(backend: Backend) -> None:
    c = backend.stomp_client().connected("1.0")
    c.send("SUBSCRIBE", {"destination": "  /topic/ten", "receipt": "  r"})
    c.receipt("r")  # STOMP 1.0 header values lose their leading spaces
    backend.publish("amq.topic", "ten", b"t")
    frame = c.recv_command("MESSAGE")
    assert "subscription" not in frame
    assert re.fullmatch(r"Q_/topic/ten@@" + SESSION + r"@@1", frame.get("message-id") or "")


def test_server_cancelled_subscription(backend: Backend) -> None:
    backend.declare_queue("doomed")
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/amq/queue/doomed", "id": "d", "receipt": "s"})
    c.receipt("s")
    backend.delete_queue("doomed")
    assert as_tuple(c.recv()) == (
        "ERROR", [("message", "Server cancelled subscription"), ("content-type", "text/plain"),
                  ("version", "1.0,1.1,1.2"), ("subscription", "d"), ("content-length", "89")],
        b"The server has canceled a subscription.\nNo more messages will be delivered for \"id='d'\".\n")
    c.expect_open()


# -- acknowledgements -----------------------------------------------------------------------------------
def _three(backend: Backend, c: object, ack: str, version: str = "1.2") -> list[object]:
    backend.declare_queue("acks")
    c.send("SUBSCRIBE", {"destination": "/amq/queue/acks", "id": "a", "ack": ack, "receipt": "s"})  # type: ignore[attr-defined]
    c.receipt("s")  # type: ignore[attr-defined]
    for body in (b"1", b"2", b"3"):
        backend.publish("", "acks", body)
    return [c.recv_command("MESSAGE") for _ in range(3)]  # type: ignore[attr-defined]


def _unacked_redelivered(backend: Backend) -> list[bytes]:
    c2 = backend.stomp_client().connected()
    c2.send("SUBSCRIBE", {"destination": "/amq/queue/acks", "id": "again"})
    out = []
    while True:
        try:
            frame = c2.recv_command("MESSAGE", timeout=0.5)
        except AssertionError:
            return out
        assert frame.get("redelivered") == "true"
        out.append(frame.body)


@pytest.mark.parametrize(("ack", "left"), [("client", [b"3"]), ("client-individual", [b"1", b"3"])])
def test_ack_modes(backend: Backend, ack: str, left: list[bytes]) -> None:
    c = backend.stomp_client().connected()
    messages = _three(backend, c, ack)
    assert all(m.get("ack") == m.get("message-id") for m in messages)  # type: ignore[attr-defined]
    c.send("ACK", {"id": messages[1].get("ack"), "receipt": "a"})  # type: ignore[attr-defined]
    c.receipt("a")
    c.close()
    assert _unacked_redelivered(backend) == left


def test_auto_ack_has_no_ack_header(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    messages = _three(backend, c, "auto")
    assert all("ack" not in m for m in messages)  # type: ignore[operator]
    c.close()
    assert _unacked_redelivered(backend) == []


def test_nack_requeues_by_default(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    messages = _three(backend, c, "client-individual")
    c.send("NACK", {"id": messages[0].get("ack")})  # type: ignore[attr-defined]
    again = c.recv_command("MESSAGE")
    assert (again.body, again.get("redelivered")) == (b"1", "true")
    assert again.get("ack") != messages[0].get("ack")  # type: ignore[attr-defined]


def test_nack_without_requeue_drops(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    messages = _three(backend, c, "client-individual")
    c.send("NACK", {"id": messages[0].get("ack"), "requeue": "false", "receipt": "n"})  # type: ignore[attr-defined]
    c.receipt("n")
    c.close()
    assert _unacked_redelivered(backend) == [b"2", b"3"]


def test_ack_errors(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    messages = _three(backend, c, "client")
    c.send("ACK", {"id": "nonsense"})
    assert as_tuple(c.recv()) == error_frame("Invalid header", '"ACK" must include a valid "id" header\n')
    c.send("UNSUBSCRIBE", {"id": "a"})
    ack = messages[0].get("ack")  # type: ignore[attr-defined]
    c.send("ACK", {"id": ack})
    assert as_tuple(c.recv()) == error_frame("Subscription not found", f'Message with id "{ack}" has no subscription')
    c.expect_open()


def test_ack_of_an_auto_delivery_closes_after_the_receipt(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    messages = _three(backend, c, "auto")
    c.send("ACK", {"id": messages[0].get("message-id"), "receipt": "ak"})  # type: ignore[attr-defined]
    assert [as_tuple(f) for f in c.expect_closed()] == [
        ("RECEIPT", [("receipt-id", "ak")], b""),
        error_frame("precondition_failed", "PRECONDITION_FAILED - unknown delivery tag 1")]


def test_stomp_11_acks_by_message_id(backend: Backend) -> None:
    c = backend.stomp_client().connected("1.1")
    messages = _three(backend, c, "client-individual")
    assert all("ack" not in m for m in messages)  # type: ignore[operator]
    for m in messages:
        c.send("ACK", {"message-id": m.get("message-id"), "subscription": "a"})  # type: ignore[attr-defined]
    c.expect_open()
    c.close()
    assert _unacked_redelivered(backend) == []


def test_prefetch_count(backend: Backend) -> None:
    backend.declare_queue("pf")
    for i in range(5):
        backend.publish("", "pf", str(i).encode())
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/amq/queue/pf", "id": "p", "ack": "client-individual",
                         "prefetch-count": "2"})
    first = [c.recv_command("MESSAGE") for _ in range(2)]
    c.expect_nothing()
    c.send("ACK", {"id": first[0].get("ack")})
    assert c.recv_command("MESSAGE").body == b"2"


# -- transactions, receipts -----------------------------------------------------------------------------
def test_transaction_commit_and_receipts(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("BEGIN", {"transaction": "tx1", "receipt": "b1"})
    c.receipt("b1")
    c.send("SEND", {"destination": "/queue/txq", "transaction": "tx1", "receipt": "s1"}, "in tx")
    c.expect_nothing()
    assert backend.get("txq") is None
    c.send("COMMIT", {"transaction": "tx1", "receipt": "c1"})
    assert [f.get("receipt-id") for f in c.frames(2)] == ["c1", "s1"]
    assert backend.get_wait("txq").body == b"in tx"


def test_transaction_abort_and_errors(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    c.send("BEGIN", {"transaction": "t"})
    c.send("BEGIN", {"transaction": "t"})
    c.send("SEND", {"destination": "/queue/txa", "transaction": "t"}, "x")
    c.send("ABORT", {"transaction": "t", "receipt": "a"})
    c.receipt("a")
    assert backend.get("txa") is None
    c.send("COMMIT", {"transaction": "t"})
    assert as_tuple(c.recv()) == error_frame("Bad transaction", 'Invalid transaction identifier: "t"\n')
    c.send("BEGIN", {})
    assert as_tuple(c.recv()) == error_frame("Missing transaction", "\"BEGIN\" must include a 'transaction' header\n")
    c.expect_open()


def test_ack_in_an_aborted_transaction_stays_unacked(backend: Backend) -> None:
    c = backend.stomp_client().connected()
    messages = _three(backend, c, "client-individual")
    c.send("BEGIN", {"transaction": "t"})
    c.send("ACK", {"id": messages[0].get("ack"), "transaction": "t"})  # type: ignore[attr-defined]
    c.send("ABORT", {"transaction": "t", "receipt": "a"})
    c.receipt("a")
    c.close()
    assert _unacked_redelivered(backend) == [b"1", b"2", b"3"]


@pytest.mark.parametrize("command", ["SUBSCRIBE", "UNSUBSCRIBE", "BEGIN", "ABORT", "SEND"])
def test_receipts_on_every_frame(backend: Backend, command: str) -> None:
    c = backend.stomp_client().connected()
    c.send("BEGIN", {"transaction": "t"})
    c.send("SUBSCRIBE", {"destination": "/topic/r", "id": "r0"})
    headers = {"SUBSCRIBE": {"destination": "/topic/r", "id": "r1"}, "UNSUBSCRIBE": {"id": "r0"},
               "BEGIN": {"transaction": "t2"}, "ABORT": {"transaction": "t"},
               "SEND": {"destination": "/topic/nobody.listens"}}[command]
    c.send(command, {**headers, "receipt": f"rc-{command}"})
    assert as_tuple(c.recv()) == ("RECEIPT", [("receipt-id", f"rc-{command}")], b"")


# -- reply queues ---------------------------------------------------------------------------------------
def test_temp_queue_reply_flow(backend: Backend) -> None:
    backend.declare_queue("rpc")
    c = backend.stomp_client().connected()
    c.send("SEND", {"destination": "/amq/queue/rpc", "reply-to": "/temp-queue/foo", "receipt": "r"}, "ask")
    c.receipt("r")
    request = backend.get_wait("rpc")
    reply_queue = request.properties["reply_to"]
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", reply_queue)
    q = backend.queue(reply_queue)
    assert q is not None and q.flags == (False, True, True)
    backend.publish("", reply_queue, b"the reply", {"correlation_id": "c1"})
    frame = c.recv_command("MESSAGE")
    assert frame.headers[:2] == [("subscription", "/temp-queue/foo"), ("destination", f"/queue/{reply_queue}")]
    assert re.fullmatch(r"T_/temp-queue/foo@@" + SESSION + r"@@1", frame.get("message-id") or "")
    assert frame.headers[3:] == [("redelivered", "false"), ("correlation-id", "c1"), ("content-length", "9")]
    c.send("SEND", {"destination": "/amq/queue/rpc", "reply-to": "/temp-queue/foo", "receipt": "r2"}, "again")
    c.receipt("r2")
    assert backend.get_wait("rpc").properties["reply_to"] == reply_queue


def test_reply_to_a_queue_passes_through_and_comes_back_as_reply_queue(backend: Backend) -> None:
    backend.declare_queue("rq")
    c = backend.stomp_client().connected()
    c.send("SUBSCRIBE", {"destination": "/amq/queue/rq", "id": "q", "receipt": "s"})
    c.receipt("s")
    c.send("SEND", {"destination": "/amq/queue/rq", "reply-to": "/queue/named-reply"}, "a")
    assert c.recv_command("MESSAGE").get("reply-to") == "/queue/named-reply"
    backend.publish("", "rq", b"b", {"reply_to": "plainname"})
    assert c.recv_command("MESSAGE").get("reply-to") == "/reply-queue/plainname"
