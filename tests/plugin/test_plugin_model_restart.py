"""``Broker.restart()`` and the publish hooks in the routing model, without sockets."""

from __future__ import annotations

from fakebroker import VirtualClock
from fakebroker.model import Broker, LoggedMessage, Message

PERSISTENT = {"delivery_mode": 2}


def make() -> tuple[Broker, VirtualClock]:
    clock = VirtualClock()
    return Broker(clock), clock


def test_durable_queues_keep_their_persistent_messages_in_order() -> None:
    broker, _ = make()
    vh = broker.vhost("/")
    vh.declare_queue("q", durable=True)
    for body, props in ((b"p1", PERSISTENT), (b"t1", {}), (b"p2", PERSISTENT), (b"t2", {"delivery_mode": 1})):
        broker.publish("", "q", body, props)
    old = vh.queue("q")

    broker.restart()

    q = vh.queue("q")
    assert q is not old and old.deleted
    assert [m.body for m in q.peek()] == [b"p1", b"p2"]
    assert q.ready_bytes == 4 and q.consumer_count == 0 and q.unacked == 0
    broker.publish("", "q", b"p3", PERSISTENT)
    assert [m.body for m in q.peek()] == [b"p1", b"p2", b"p3"]


def test_what_survives_and_what_does_not() -> None:
    broker, _ = make()
    vh = broker.vhost("/")
    vh.declare_exchange("durable-x", "topic", durable=True)
    vh.declare_exchange("transient-x", "fanout")
    vh.declare_queue("durable-q", durable=True)
    vh.declare_queue("transient-q")
    vh.declare_queue("exclusive-q", durable=True, exclusive=True, owner=object())
    vh.declare_queue("auto-delete-q", durable=True, auto_delete=True)  # never consumed: kept, as in RabbitMQ
    vh.bind("durable-q", "durable-x", "#")
    vh.bind("transient-q", "durable-x", "#")
    vh.bind("durable-q", "transient-x")
    vh.bind("durable-q", "amq.topic", "a.*")
    deleted: list[tuple[str, str]] = []
    broker.on("queue_deleted", lambda vhost, name: deleted.append((vhost, name)))
    broker.publish("amq.topic", "a.b", b"logged")

    broker.restart()

    assert set(vh.queues) == {"durable-q", "auto-delete-q"}
    assert "durable-x" in vh.exchanges and "transient-x" not in vh.exchanges and "amq.topic" in vh.exchanges
    assert sorted((b.source, b.destination, b.routing_key) for b in vh.bindings() if b.source) == [
        ("amq.topic", "durable-q", "a.*"), ("durable-x", "durable-q", "#")]
    assert vh.route(_message("durable-x", "x")) == ["durable-q"]  # the routing tables follow the bindings
    assert sorted(deleted) == [("/", "exclusive-q"), ("/", "transient-q")]
    assert [m.body for m in broker.log] == [b"logged"]  # the message log is an observation, not broker state


def _message(exchange: str = "amq.topic", key: str = "a.b") -> Message:
    return Message(exchange, key, b"retained")


def test_message_ttl_timer_is_armed_for_the_new_head() -> None:
    broker, clock = make()
    vh = broker.vhost("/")
    vh.declare_queue("dead", durable=True)
    vh.declare_queue("q", durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
    broker.publish("", "q", b"transient, expires first", {"expiration": "2000"})
    broker.publish("", "q", b"persistent", {"delivery_mode": 2, "expiration": "10000"})
    clock.advance(1)

    broker.restart()

    clock.advance(8.9)  # t = 9.9: the persistent message's deadline (t = 10) is unchanged by the restart
    assert [m.body for m in vh.queue("q").peek()] == [b"persistent"]
    clock.advance(0.1)
    assert vh.queue("q").message_count == 0
    assert [m.body for m in vh.queue("dead").peek()] == [b"persistent"]


def test_x_expires_counts_again_from_the_restart() -> None:
    broker, clock = make()
    vh = broker.vhost("/")
    vh.declare_queue("session", durable=True, arguments={"x-expires": 10_000})
    clock.advance(8)
    broker.restart()
    clock.advance(9.9)  # t = 17.9: the old deadline (t = 10) did not fire
    assert "session" in vh.queues
    clock.advance(0.1)
    assert "session" not in vh.queues


def test_publish_hooks_drop_or_delay() -> None:
    broker, clock = make()
    vh = broker.vhost("/")
    vh.declare_queue("q")
    seen: list[str] = []
    broker.on("route", lambda entry: seen.append(f"{entry.body.decode()}:{entry.fault}:{list(entry.queues)}"))

    def hook(entry: LoggedMessage) -> str | float | None:
        return {b"drop": "drop", b"late": 3.0}.get(entry.body)

    broker.publish_hooks.append(hook)
    broker.publish("", "q", b"drop")
    late = broker.publish("", "q", b"late")
    broker.publish("", "q", b"plain")
    assert late.pending and late.delayed_until == 3.0 and late.queues == ()
    assert [m.body for m in vh.queue("q").peek()] == [b"plain"]
    assert "delayed to t=3.000, not routed yet" in late.describe()

    vh.declare_queue("q2")
    vh.bind("q2", "amq.fanout")  # unrelated; the delayed message keeps its exchange and routing key
    clock.advance(3)

    assert not late.pending and late.queues == ("q",)
    assert [m.body for m in vh.queue("q").peek()] == [b"plain", b"late"]
    assert seen == ["drop:dropped:[]", "plain:None:['q']", "late:delayed:['q']"]
    assert "dropped (fault injection)" in broker.log[0].describe()


def test_a_delayed_message_to_a_deleted_exchange_is_unroutable() -> None:
    broker, clock = make()
    vh = broker.vhost("/")
    vh.declare_exchange("x", "fanout")
    vh.declare_queue("q")
    vh.bind("q", "x")
    broker.publish_hooks.append(lambda entry: 1.0)
    entry = broker.publish("x", "", b"m")
    vh.delete_exchange("x")
    clock.advance(1)
    assert not entry.pending and entry.queues == () and vh.queue("q").message_count == 0
