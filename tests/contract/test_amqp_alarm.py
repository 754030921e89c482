"""AMQP 0-9-1 under a resource alarm, as RabbitMQ 3.10 applies a memory alarm: nothing is said when it goes
off; a connection that publishes is then told ``connection.blocked`` (if it announced the capability) and no
longer read, that publish included; the others carry on, consumers included; when the alarm clears, the
connections that were told get ``connection.unblocked`` and what they sent is read.

On the real side the alarm is ``rabbitmqctl set_vm_memory_high_watermark 0`` on a private node (the
``alarm_backend`` fixture): on the shared node it would block every other scenario's publishers."""

from __future__ import annotations

from typing import Any

import pika
import pytest
from amqpkit import Collector, RawAmqp, connect, pump
from kit.wait import wait_until
from pamqp import frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat


def _events(conn: pika.BlockingConnection) -> list[str]:
    events: list[str] = []
    conn.add_on_connection_blocked_callback(lambda _, f: events.append(f"blocked: {f.method.reason}"))
    conn.add_on_connection_unblocked_callback(lambda _, f: events.append("unblocked"))
    return events


def _quiet(backend: Any, *conns: pika.BlockingConnection) -> None:
    """Let whatever the broker would send arrive (the quiet period of the contract suite)."""
    for conn in conns:
        conn.process_data_events(time_limit=backend.quiet)


def test_only_a_connection_that_publishes_is_blocked(alarm_backend: Any) -> None:
    backend = alarm_backend
    queue = backend.cid("q")
    idle, publisher, consumer = connect(backend), connect(backend), connect(backend)
    idle_events, publisher_events, consumer_events = _events(idle), _events(publisher), _events(consumer)
    setup = idle.channel()
    setup.queue_declare(queue)
    setup.basic_publish("", queue, b"before")
    pub = publisher.channel()
    backend.alarm()
    _quiet(backend, idle, publisher, consumer)
    assert (idle_events, publisher_events, consumer_events) == ([], [], [])  # nothing said when it goes off
    assert backend.connection_states() == ["blocking"] * 3
    # Connections that do not publish carry on: a declare is answered, a consumer gets what is queued.
    assert setup.queue_declare(queue, passive=True).method.message_count == 1
    got = Collector(consumer)
    consumer.channel().basic_consume(queue, got, auto_ack=True)
    assert got.wait(1) and got.bodies == [b"before"]
    pub.basic_publish("", queue, b"during")
    pump(publisher, lambda: bool(publisher_events))
    assert publisher_events == ["blocked: low on memory"]
    assert got.settle(backend.quiet) and got.bodies == [b"before"]  # the publish is not read
    assert backend.connection_states() == ["blocked", "blocking", "blocking"]
    backend.clear_alarm()
    pump(publisher, lambda: len(publisher_events) == 2)
    assert publisher_events == ["blocked: low on memory", "unblocked"]
    got.wait(2)
    assert got.bodies == [b"before", b"during"]
    _quiet(backend, idle, consumer)
    assert (idle_events, consumer_events) == ([], [])  # never told it was blocked: no unblocked either
    # Each connection learns that the alarm cleared on its own time: poll.
    wait_until(lambda: backend.connection_states() == ["running"] * 3, what="every connection running")


def test_a_connection_opened_during_the_alarm_is_blocked_at_its_first_publish(alarm_backend: Any) -> None:
    backend = alarm_backend
    queue = backend.cid("q")
    connect(backend).channel().queue_declare(queue)
    backend.alarm()
    late = connect(backend)
    events = _events(late)
    ch = late.channel()
    _quiet(backend, late)
    assert events == []
    ch.basic_publish("", queue, b"held")
    pump(late, lambda: bool(events))
    assert events == ["blocked: low on memory"]
    backend.clear_alarm()
    pump(late, lambda: len(events) == 2)
    # RabbitMQ routes the publish it finally reads a moment later than it answers what follows it: poll.
    assert wait_until(lambda: ch.basic_get(queue, auto_ack=True)[2], what="the held message") == b"held"


def _publish(raw: RawAmqp, queue: str, body: bytes) -> None:
    c = raw.c
    raw.send_raw(frame.marshal(c.Basic.Publish(exchange="", routing_key=queue), 1)
                 + frame.marshal(ContentHeader(0, len(body), c.Basic.Properties()), 1)
                 + frame.marshal(ContentBody(body), 1))


def _get_wait(raw: RawAmqp, queue: str) -> bytes:
    """basic.get until the queue has a message (RabbitMQ routes a publish it held a moment after it answers
    the methods read behind it); the message's body."""
    c = raw.c

    def get() -> bytes | None:
        raw.send(1, c.Basic.Get(queue=queue, no_ack=True))
        _, answer = raw.frame()
        if isinstance(answer, c.Basic.GetEmpty):
            return None
        assert isinstance(answer, c.Basic.GetOk), answer
        raw.frame()  # the content header
        _, body = raw.frame()
        return bytes(body.value)

    return wait_until(get, what=f"a message in {queue}")  # type: ignore[no-any-return]


@pytest.mark.parametrize("resource", ["memory", "disk"])
def test_the_frames_of_a_blocked_connection(alarm_backend: Any, resource: str) -> None:
    backend = alarm_backend
    queue = backend.cid("q")
    raw = RawAmqp(backend, capabilities={"connection.blocked": True})
    c = raw.c
    raw.send(1, c.Channel.Open())
    raw.expect(c.Channel.OpenOk)
    raw.send(1, c.Queue.Declare(queue=queue))
    raw.expect(c.Queue.DeclareOk)
    backend.alarm(resource)
    _publish(raw, queue, b"held")
    raw.send(1, c.Queue.Declare(queue=queue, passive=True))
    blocked = raw.expect(c.Connection.Blocked)
    assert blocked.reason == f"low on {resource}"  # the disk alarm's text: "low on disk"
    assert raw.frames_within(backend.quiet) == []  # the declare behind the publish is not read
    backend.clear_alarm()
    raw.expect(c.Connection.Unblocked)
    raw.expect(c.Queue.DeclareOk)
    assert _get_wait(raw, queue) == b"held"


def test_a_client_without_the_capability_is_paused_without_a_word(alarm_backend: Any) -> None:
    backend = alarm_backend
    queue = backend.cid("q")
    raw = RawAmqp(backend)  # announces authentication_failure_close and consumer_cancel_notify only
    c = raw.c
    raw.send(1, c.Channel.Open())
    raw.expect(c.Channel.OpenOk)
    raw.send(1, c.Queue.Declare(queue=queue))
    raw.expect(c.Queue.DeclareOk)
    backend.alarm()
    _publish(raw, queue, b"held")
    raw.send(1, c.Queue.Declare(queue=queue, passive=True))
    assert raw.frames_within(backend.quiet) == []
    backend.clear_alarm()
    raw.expect(c.Queue.DeclareOk)  # the first frame after the alarm: no unblocked
    assert _get_wait(raw, queue) == b"held"


def test_a_blocked_connection_is_not_dropped_for_missed_heartbeats(alarm_backend: Any) -> None:
    """The broker stops reading a blocked connection, so it stops listening for its heartbeats too."""
    backend = alarm_backend
    backend.alarm()  # first: the two clients below stay silent, and the alarm takes a while on the real node
    blocked = RawAmqp(backend, capabilities={"connection.blocked": True}, heartbeat=1)
    silent = RawAmqp(backend, capabilities={"connection.blocked": True}, heartbeat=1)
    blocked.send(1, blocked.c.Channel.Open())
    blocked.expect(blocked.c.Channel.OpenOk)
    _publish(blocked, backend.cid("q"), b"held")
    blocked.expect(blocked.c.Connection.Blocked)
    backend.advance(3.5)  # past two silent heartbeat intervals
    assert silent.frames_within(backend.quiet)[-1:] == [(-1, None)]  # the broker hung up on it
    heard = blocked.frames_within(backend.quiet)
    assert (-1, None) not in heard and all(isinstance(f, Heartbeat) for _, f in heard)
    backend.clear_alarm()
    blocked.expect(blocked.c.Connection.Unblocked)
