"""The model's additions for AMQP clients: exchange-to-exchange bindings, alternate exchanges, the channel-wide
prefetch window, exclusive consumers, and taking acknowledgements for a transaction. Behaviour checked against
RabbitMQ 3.10.8 by the contract scenarios in tests/contract/test_amqp_*.py."""

from __future__ import annotations

import pytest

from fakebroker.clock import VirtualClock
from fakebroker.errors import AccessRefused, NotFound, PreconditionFailed
from fakebroker.model import Broker, Channel, Delivery, Message, VHost


@pytest.fixture
def broker() -> Broker:
    return Broker(VirtualClock())


@pytest.fixture
def vh(broker: Broker) -> VHost:
    return broker.vhost("/")


def route(vh: VHost, exchange: str, key: str = "", headers: dict[str, object] | None = None) -> list[str]:
    return vh.route(Message(exchange, key, b"", {"headers": headers} if headers else {}))


def test_exchange_to_exchange_routing_follows_the_destinations_type(vh: VHost) -> None:
    vh.declare_exchange("src", "topic")
    vh.declare_exchange("dst", "direct")
    for q in ("a", "b"):
        vh.declare_queue(q)
    vh.bind("a", "dst", "x.y")
    vh.bind("b", "src", "#")
    vh.bind_exchange("dst", "src", "x.*")
    assert route(vh, "src", "x.y") == ["a", "b"]
    assert route(vh, "src", "x.z") == ["b"]  # reached dst, which has no binding for x.z
    vh.unbind_exchange("dst", "src", "x.*")
    assert route(vh, "src", "x.y") == ["b"]


def test_binding_cycles_visit_each_exchange_once(vh: VHost) -> None:
    for name in ("e1", "e2", "e3"):
        vh.declare_exchange(name, "fanout")
    vh.bind_exchange("e2", "e1")
    vh.bind_exchange("e3", "e2")
    vh.bind_exchange("e1", "e3")
    vh.declare_queue("q")
    vh.bind("q", "e3")
    assert route(vh, "e1") == ["q"]


def test_bind_exchange_errors(vh: VHost) -> None:
    vh.declare_exchange("dst", "fanout")
    with pytest.raises(NotFound, match="no exchange 'nope'"):
        vh.bind_exchange("dst", "nope")
    with pytest.raises(NotFound, match="no exchange 'nope'"):
        vh.bind_exchange("nope", "dst")
    with pytest.raises(AccessRefused, match="default exchange"):
        vh.bind_exchange("dst", "")
    vh.unbind_exchange("dst", "nope")  # missing: not an error


def test_headers_exchange_as_a_source_checks_x_match(vh: VHost) -> None:
    vh.declare_exchange("h", "headers")
    vh.declare_exchange("dst", "fanout")
    with pytest.raises(PreconditionFailed, match="Invalid x-match field value"):
        vh.bind_exchange("dst", "h", "", {"x-match": "some"})


def test_deleting_a_destination_exchange_removes_bindings_to_it_and_auto_deletes_sources(vh: VHost) -> None:
    vh.declare_exchange("src", "fanout", auto_delete=True)
    vh.declare_exchange("dst", "fanout")
    vh.bind_exchange("dst", "src")
    vh.delete_exchange("dst")
    assert "src" not in vh.exchanges  # its last binding went


def test_if_unused_counts_bindings_as_a_source(vh: VHost) -> None:
    vh.declare_exchange("src", "fanout")
    vh.declare_exchange("dst", "fanout")
    vh.bind_exchange("dst", "src")
    vh.delete_exchange("dst", if_unused=True)  # only a destination: unused
    assert "dst" not in vh.exchanges


def test_a_queue_and_an_exchange_of_the_same_name_are_different_destinations(vh: VHost) -> None:
    vh.declare_exchange("src", "direct")
    vh.declare_exchange("same", "fanout")
    vh.declare_queue("same")
    vh.declare_queue("q")
    vh.bind("q", "same")
    vh.bind_exchange("same", "src", "k")
    assert route(vh, "src", "k") == ["q"]
    vh.bind("same", "src", "k")
    assert route(vh, "src", "k") == ["q", "same"]
    vh.delete_queue("same")
    assert route(vh, "src", "k") == ["q"]  # the exchange binding stayed


def test_alternate_exchange(vh: VHost) -> None:
    vh.declare_exchange("ae", "fanout")
    vh.declare_exchange("main", "direct", arguments={"alternate-exchange": "ae"})
    vh.declare_queue("known")
    vh.declare_queue("unrouted")
    vh.bind("known", "main", "k")
    vh.bind("unrouted", "ae")
    assert route(vh, "main", "k") == ["known"]
    assert route(vh, "main", "other") == ["unrouted"]
    vh.delete_exchange("ae")
    assert route(vh, "main", "other") == []  # a missing alternate is no error


def test_alternate_exchange_cycles_end(vh: VHost) -> None:
    vh.declare_exchange("a", "direct", arguments={"alternate-exchange": "b"})
    vh.declare_exchange("b", "direct", arguments={"alternate-exchange": "a"})
    assert route(vh, "a", "k") == []


def test_restart_drops_bindings_of_transient_exchanges(broker: Broker, vh: VHost) -> None:
    vh.declare_exchange("durable-src", "fanout", durable=True)
    vh.declare_exchange("transient", "fanout")
    vh.bind_exchange("transient", "durable-src")
    broker.restart()
    assert not vh.exchanges["durable-src"].bindings


def test_global_prefetch_is_one_window_for_the_channel(vh: VHost) -> None:
    ch = Channel(vh, owner=object())
    ch.global_prefetch = 2
    got: list[Delivery] = []
    for q in ("q1", "q2"):
        vh.declare_queue(q)
        for i in range(2):
            vh.deliver(Message("", q, f"{q}-{i}".encode()), [q])
        ch.consume(q, got.append)
    assert [d.body for d in got] == [b"q1-0", b"q1-1"]
    ch.ack(got[0].delivery_tag)
    assert [d.body for d in got][2:] == [b"q2-0"]  # the blocked consumer of q2 had its turn
    ch.ack(0, multiple=True)
    assert [d.body for d in got][3:] == [b"q2-1"]


def test_exclusive_consumers(vh: VHost) -> None:
    vh.declare_queue("q")
    ch = Channel(vh, owner=object())
    tag = ch.consume("q", lambda d: None, exclusive=True)
    with pytest.raises(AccessRefused, match="queue 'q' in vhost '/' in exclusive use"):
        ch.consume("q", lambda d: None)
    ch.cancel(tag)
    ch.consume("q", lambda d: None)
    with pytest.raises(AccessRefused, match="in exclusive use"):
        ch.consume("q", lambda d: None, exclusive=True)


def test_take_then_restore_or_settle(vh: VHost) -> None:
    vh.declare_queue("q")
    for i in range(3):
        vh.deliver(Message("", "q", str(i).encode()), ["q"])
    ch = Channel(vh, owner=object())
    tags = [d.delivery_tag for d in (ch.get("q", no_ack=False) for _ in range(3)) if d is not None]
    taken = ch.take(tags[1], multiple=True)
    with pytest.raises(PreconditionFailed, match="unknown delivery tag 1"):
        ch.take(tags[0], multiple=False)  # taken already: unknown until restored
    ch.restore(taken)
    ch.settle_taken(ch.take(tags[2], multiple=False), "requeue")
    assert [m.body for m in vh.queues["q"].peek()] == [b"2"]
    assert ch.unacked_count == 2


def test_consumer_priorities_serve_the_highest_with_room_first(vh: VHost) -> None:
    vh.declare_queue("q")
    ch = Channel(vh, owner=object())
    got: list[tuple[str, bytes]] = []
    ch.consume("q", lambda d: got.append(("low-a", d.body)), prefetch=1, tag="low-a", priority=-1)
    ch.consume("q", lambda d: got.append(("high", d.body)), prefetch=1, tag="high", priority=5)
    ch.consume("q", lambda d: got.append(("low-b", d.body)), prefetch=1, tag="low-b", priority=-1)
    for i in range(4):
        vh.deliver(Message("", "q", b"%d" % i), ["q"])
    # high first; with its window full the two low ones take turns; the fourth waits for room.
    assert got == [("high", b"0"), ("low-a", b"1"), ("low-b", b"2")]
    ch.ack(2)  # low-a's delivery: room opens at the low tier only
    assert got[3:] == [("low-a", b"3")]
    vh.deliver(Message("", "q", b"4"), ["q"])
    ch.ack(1)  # high has room again and comes first
    assert got[4:] == [("high", b"4")]


def test_cancelling_a_prioritised_consumer(vh: VHost) -> None:
    vh.declare_queue("q")
    ch = Channel(vh, owner=object())
    got: list[str] = []
    ch.consume("q", lambda d: got.append("high"), tag="high", priority=3)
    ch.consume("q", lambda d: got.append("plain"), tag="plain")
    ch.cancel("high")
    vh.deliver(Message("", "q", b"x"), ["q"])
    assert got == ["plain"]
