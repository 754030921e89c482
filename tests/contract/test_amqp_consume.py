"""AMQP 0-9-1: consumers, acknowledgements, requeue order, prefetch, and their errors."""

from __future__ import annotations

import pika
from amqpkit import Collector, RawAmqp, channel_error, connect, connection_error, pump
from contractlib import Backend


def fill(ch: pika.adapters.blocking_connection.BlockingChannel, queue: str, n: int) -> None:
    ch.queue_declare(queue)
    for i in range(n):
        ch.basic_publish("", queue, f"m{i}".encode())


def test_consume_in_order_with_tags_from_one(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    fill(ch, "q", 3)
    got = Collector(conn, ack=True)
    tag = ch.basic_consume("q", got)
    items = got.wait(3)
    assert [(m.delivery_tag, m.consumer_tag, m.redelivered, b) for m, _, b in items] == [
        (1, tag, False, b"m0"), (2, tag, False, b"m1"), (3, tag, False, b"m2")]


def test_server_generated_consumer_tags(backend: Backend) -> None:
    raw = RawAmqp(backend)
    c = raw.c
    raw.send(1, c.Channel.Open())
    raw.expect(c.Channel.OpenOk)
    raw.send(1, c.Queue.Declare(queue="q"))
    raw.expect(c.Queue.DeclareOk)
    raw.send(1, c.Basic.Consume(queue="q"))
    tag = raw.expect(c.Basic.ConsumeOk).consumer_tag
    assert tag.startswith("amq.ctag-") and len(tag) == len("amq.ctag-") + 22


def test_a_reused_consumer_tag_closes_the_connection(backend: Backend) -> None:
    # pika refuses to send it: speak AMQP directly.
    raw = RawAmqp(backend)
    c = raw.c
    raw.send(1, c.Channel.Open())
    raw.expect(c.Channel.OpenOk)
    raw.send(1, c.Queue.Declare(queue="q"))
    raw.expect(c.Queue.DeclareOk)
    raw.send(1, c.Basic.Consume(queue="q", consumer_tag="mine"))
    raw.expect(c.Basic.ConsumeOk)
    raw.send(1, c.Basic.Consume(queue="q", consumer_tag="mine"))
    close = raw.expect(c.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        530, "NOT_ALLOWED - attempt to reuse consumer tag 'mine'", 60, 20)


def test_consumers_share_a_queue_round_robin(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    ch.queue_declare("q")
    a, b = Collector(conn, ack=True), Collector(conn, ack=True)
    ch.basic_consume("q", a)
    ch.basic_consume("q", b)
    for i in range(4):
        ch.basic_publish("", "q", f"m{i}".encode())
    pump(conn, lambda: len(a.items) + len(b.items) == 4)
    assert a.bodies == [b"m0", b"m2"] and b.bodies == [b"m1", b"m3"]


def test_an_exclusive_consumer_has_the_queue_to_itself(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_consume("q", lambda *a: None, exclusive=True)
    other = conn.channel()
    assert channel_error(lambda: other.basic_consume("q", lambda *a: None)) == (
        403, f"ACCESS_REFUSED - queue 'q' in vhost '{backend.vhost}' in exclusive use")
    ch2 = conn.channel()
    ch2.queue_declare("shared")
    ch2.basic_consume("shared", lambda *a: None)
    assert channel_error(lambda: ch2.basic_consume("shared", lambda *a: None, exclusive=True)) == (
        403, f"ACCESS_REFUSED - queue 'shared' in vhost '{backend.vhost}' in exclusive use")


def test_basic_get_counts_what_is_left_and_empty(backend: Backend) -> None:
    ch = connect(backend).channel()
    fill(ch, "q", 2)
    method, _, body = ch.basic_get("q", auto_ack=True)
    assert (body, method.message_count, method.delivery_tag, method.exchange) == (b"m0", 1, 1, "")
    ch.basic_get("q", auto_ack=True)
    assert ch.basic_get("q") == (None, None, None)


def test_an_unknown_delivery_tag(backend: Backend) -> None:
    ch = connect(backend).channel()
    ch.basic_ack(999)
    assert channel_error(lambda: ch.queue_declare("q")) == (406, "PRECONDITION_FAILED - unknown delivery tag 999")


def test_a_double_ack(backend: Backend) -> None:
    ch = connect(backend).channel()
    fill(ch, "q", 1)
    method, _, _ = ch.basic_get("q")
    ch.basic_ack(method.delivery_tag)
    ch.basic_ack(method.delivery_tag)
    assert channel_error(lambda: ch.queue_declare("q", passive=True)) == (
        406, "PRECONDITION_FAILED - unknown delivery tag 1")


def test_ack_multiple(backend: Backend) -> None:
    ch = connect(backend).channel()
    fill(ch, "q", 3)
    tags = [ch.basic_get("q")[0].delivery_tag for _ in range(3)]
    ch.basic_ack(tags[1], multiple=True)
    ch.basic_recover(requeue=True)  # only the third was still unacknowledged
    assert ch.queue_declare("q", passive=True).method.message_count == 1


def test_reject_requeue_puts_it_back_at_its_place_redelivered(backend: Backend) -> None:
    ch = connect(backend).channel()
    fill(ch, "q", 3)
    first = ch.basic_get("q")[0]
    ch.basic_reject(first.delivery_tag, requeue=True)
    method, _, body = ch.basic_get("q", auto_ack=True)
    assert (body, method.redelivered) == (b"m0", True)
    method, _, body = ch.basic_get("q", auto_ack=True)
    assert (body, method.redelivered) == (b"m1", False)


def test_nack_multiple_requeue_keeps_the_original_order(backend: Backend) -> None:
    ch = connect(backend).channel()
    fill(ch, "q", 4)
    tags = [ch.basic_get("q")[0].delivery_tag for _ in range(3)]
    ch.basic_reject(tags[1], requeue=True)
    ch.basic_nack(tags[2], multiple=True, requeue=True)
    got = [ch.basic_get("q", auto_ack=True) for _ in range(4)]
    assert [(b, m.redelivered) for m, _, b in got] == [(b"m0", True), (b"m1", True), (b"m2", True), (b"m3", False)]


def test_reject_without_requeue_dead_letters(backend: Backend) -> None:
    ch = connect(backend).channel()
    ch.queue_declare("dead")
    ch.queue_declare("q", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
    ch.basic_publish("", "q", b"bad")
    ch.basic_publish("", "q", b"worse")
    ch.basic_reject(ch.basic_get("q")[0].delivery_tag, requeue=False)
    ch.basic_nack(ch.basic_get("q")[0].delivery_tag, requeue=False)
    first = ch.basic_get("dead", auto_ack=True)
    second = ch.basic_get("dead", auto_ack=True)
    assert (first[2], second[2]) == (b"bad", b"worse")
    (death,) = first[1].headers["x-death"]
    assert (death["reason"], death["queue"], death["count"], first[1].headers["x-first-death-reason"]) == (
        "rejected", "q", 1, "rejected")
    assert ch.queue_declare("q", passive=True).method.message_count == 0


def test_closing_a_channel_requeues_its_unacked_messages_in_order(backend: Backend) -> None:
    conn = connect(backend)
    consumer = conn.channel()
    fill(consumer, "q", 3)
    got = Collector(conn)
    consumer.basic_consume("q", got)
    got.wait(3)
    consumer.close()
    ch = conn.channel()
    got = [ch.basic_get("q", auto_ack=True) for _ in range(3)]
    assert [(b, m.redelivered) for m, _, b in got] == [(b"m0", True), (b"m1", True), (b"m2", True)]


def test_recover_requeues_and_without_requeue_is_not_implemented(backend: Backend) -> None:
    ch = connect(backend).channel()
    fill(ch, "q", 1)
    ch.basic_get("q")
    ch.basic_recover(requeue=True)
    method, _, _ = ch.basic_get("q", auto_ack=True)
    assert method.redelivered
    assert connection_error(lambda: ch.basic_recover(requeue=False)) == (540, "NOT_IMPLEMENTED - requeue=false")


def test_prefetch_count_limits_unacknowledged_deliveries(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    fill(ch, "q", 5)
    ch.basic_qos(prefetch_count=2)
    got = Collector(conn)
    ch.basic_consume("q", got)
    assert len(got.settle(backend.quiet)) == 2
    ch.basic_ack(got.items[1][0].delivery_tag, multiple=True)
    assert [b for _, _, b in got.wait(4)] == [b"m0", b"m1", b"m2", b"m3"]
    assert len(got.settle(backend.quiet)) == 4


def test_global_prefetch_is_shared_by_the_channels_consumers(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    fill(ch, "q1", 3)
    fill(ch, "q2", 3)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    got = Collector(conn)
    ch.basic_consume("q1", got)
    ch.basic_consume("q2", got)
    assert len(got.settle(backend.quiet)) == 3
    ch.basic_ack(got.items[0][0].delivery_tag)
    assert len(got.wait(4)) == 4
    assert len(got.settle(backend.quiet)) == 4


def test_prefetch_applies_to_consumers_started_after_it(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    fill(ch, "q", 4)
    early = Collector(conn)
    ch.basic_consume("q", early)
    ch.basic_qos(prefetch_count=1)
    assert len(early.settle(backend.quiet)) == 4


def test_prefetch_size_is_not_implemented(backend: Backend) -> None:
    ch = connect(backend).channel()
    assert connection_error(lambda: ch.basic_qos(prefetch_size=1024)) == (
        540, "NOT_IMPLEMENTED - prefetch_size!=0 (1024)")


def test_no_ack_consumers_are_not_limited_by_prefetch(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    fill(ch, "q", 5)
    ch.basic_qos(prefetch_count=1)
    got = Collector(conn)
    ch.basic_consume("q", got, auto_ack=True)
    assert len(got.wait(5)) == 5


def test_cancel_stops_deliveries_and_keeps_the_unacked(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    ch.queue_declare("q")
    got = Collector(conn)
    tag = ch.basic_consume("q", got)
    ch.basic_publish("", "q", b"before")
    got.wait(1)
    ch.basic_cancel(tag)
    ch.basic_publish("", "q", b"after")
    assert got.settle(backend.quiet) and got.bodies == [b"before"]
    ch.basic_ack(got.items[0][0].delivery_tag)  # still acknowledgeable after the cancel
    assert ch.queue_declare("q", passive=True).method.message_count == 1


def test_deleting_the_queue_cancels_the_consumer(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    ch.queue_declare("q")
    cancelled: list[str] = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume("q", lambda *a: None)
    connect(backend).channel().queue_delete("q")
    pump(conn, lambda: bool(cancelled))
    assert cancelled == [tag]


def test_consumer_priorities(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_qos(prefetch_count=2)
    low, high = Collector(conn), Collector(conn)
    ch.basic_consume("q", low, arguments={"x-priority": 1})
    ch.basic_consume("q", high, arguments={"x-priority": 10})
    for i in range(5):
        ch.basic_publish("", "q", f"m{i}".encode())
    # The high-priority consumer is served first, while it has room; then the low one.
    pump(conn, lambda: len(low.items) + len(high.items) == 4)
    assert (high.bodies, low.bodies) == ([b"m0", b"m1"], [b"m2", b"m3"])
    ch.basic_ack(high.items[1][0].delivery_tag, multiple=True)
    pump(conn, lambda: len(high.items) == 3)
    assert high.bodies[2] == b"m4" and len(low.settle(backend.quiet)) == 2


def test_an_invalid_consumer_priority(backend: Backend) -> None:
    ch = connect(backend).channel()
    ch.queue_declare("q")
    assert channel_error(lambda: ch.basic_consume("q", lambda *a: None, arguments={"x-priority": "high"})) == (
        406, f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'q' in vhost '{backend.vhost}': "
             '"expected integer, got longstr"')
