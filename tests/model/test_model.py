"""Unit tests of the routing core (fakebroker.model) and the virtual clock, without sockets.

Error texts and behaviours marked "observed" were checked against RabbitMQ 3.10.8 with pika.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from fakebroker.clock import VirtualClock
from fakebroker.errors import (
    AccessRefused,
    CommandInvalid,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)
from fakebroker.model import Broker, Channel, Delivery, Message, VHost

LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'q' in vhost '/'. It could be originally "
    "declared on another connection or the exclusive property value does not match that of the original "
    "declaration."
)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def broker(clock: VirtualClock) -> Broker:
    return Broker(clock)


@pytest.fixture
def vh(broker: Broker) -> VHost:
    return broker.vhost()


@pytest.fixture
def ch(vh: VHost) -> Channel:
    return Channel(vh, object(), "client-a")


def bodies(vh: VHost, queue: str) -> list[bytes]:
    return [m.body for m in vh.queue(queue).peek()]


def drain(ch: Channel, queue: str) -> list[bytes]:
    out = []
    while (d := ch.get(queue)) is not None:
        out.append(d.body)
    return out


def raises(exc: type[Exception], text: str) -> Any:
    """``pytest.raises`` for the exact RabbitMQ text."""
    import re

    return pytest.raises(exc, match="^" + re.escape(text) + "$")


# -- exchanges -------------------------------------------------------------------------------------------
def test_predeclared_exchanges_are_rabbitmqs(vh: VHost) -> None:
    # observed: GET /api/exchanges/%2F on a fresh 3.10.8 node
    assert {(e.name, e.type, e.durable, e.internal, e.auto_delete) for e in vh.exchanges.values()} == {
        ("", "direct", True, False, False),
        ("amq.direct", "direct", True, False, False),
        ("amq.fanout", "fanout", True, False, False),
        ("amq.headers", "headers", True, False, False),
        ("amq.match", "headers", True, False, False),
        ("amq.rabbitmq.trace", "topic", True, True, False),
        ("amq.topic", "topic", True, False, False),
    }


def test_default_exchange_routes_by_queue_name(broker: Broker, vh: VHost) -> None:
    vh.declare_queue("q")
    assert broker.publish("", "q", b"1").queues == ("q",)
    assert broker.publish("", "nope", b"2").queues == ()
    assert bodies(vh, "q") == [b"1"]
    assert ("", "q", "q") in [(b.source, b.destination, b.routing_key) for b in vh.bindings()]


def test_direct_exchange(broker: Broker, vh: VHost) -> None:
    for q in ("a", "b", "c"):
        vh.declare_queue(q)
    vh.bind("a", "amq.direct", "k1")
    vh.bind("b", "amq.direct", "k1")
    vh.bind("c", "amq.direct", "k2")
    vh.bind("c", "amq.direct", "k2")  # idempotent
    assert broker.publish("amq.direct", "k1", b"x").queues == ("a", "b")
    assert broker.publish("amq.direct", "k2", b"y").queues == ("c",)
    assert broker.publish("amq.direct", "k3", b"z").queues == ()
    vh.unbind("c", "amq.direct", "k2")
    assert broker.publish("amq.direct", "k2", b"y").queues == ()
    assert bodies(vh, "c") == [b"y"]


def test_fanout_exchange_ignores_the_routing_key(broker: Broker, vh: VHost) -> None:
    vh.declare_exchange("f", "fanout")
    for q in ("a", "b"):
        vh.declare_queue(q)
        vh.bind(q, "f", "whatever")
    vh.bind("a", "f", "other")  # a second binding does not deliver twice
    assert broker.publish("f", "anything", b"x").queues == ("a", "b")
    assert bodies(vh, "a") == [b"x"]


def test_topic_exchange(broker: Broker, vh: VHost) -> None:
    for q, key in (("all", "#"), ("one", "a.*"), ("deep", "a.#.z")):
        vh.declare_queue(q)
        vh.bind(q, "amq.topic", key)
    assert broker.publish("amq.topic", "a.b", b"").queues == ("all", "one")
    assert broker.publish("amq.topic", "a.b.c.z", b"").queues == ("all", "deep")
    assert broker.publish("amq.topic", "", b"").queues == ("all",)



def test_routing_follows_binding_changes_between_publishes(broker: Broker, vh: VHost) -> None:
    # Routes are cached per routing key until a binding of the exchange changes.
    vh.declare_exchange("f", "fanout")
    for q in ("a", "b"):
        vh.declare_queue(q)
    assert broker.publish("amq.topic", "s.1", b"").queues == ()
    vh.bind("a", "amq.topic", "s.*")
    vh.bind("a", "f", "")
    assert broker.publish("amq.topic", "s.1", b"").queues == ("a",)
    assert broker.publish("f", "x", b"").queues == ("a",)
    vh.bind("b", "amq.topic", "#")
    vh.bind("b", "f", "")
    assert broker.publish("amq.topic", "s.1", b"").queues == ("a", "b")
    assert broker.publish("f", "y", b"").queues == ("a", "b")
    vh.unbind("a", "amq.topic", "s.*")
    vh.delete_queue("b")
    assert broker.publish("amq.topic", "s.1", b"").queues == ()
    assert broker.publish("f", "z", b"").queues == ("a",)
    # More distinct keys than the cache holds: still routed right, and the cache stays bounded.
    vh.bind("a", "amq.topic", "k.#")
    assert all(broker.publish("amq.topic", f"k.{n}", b"").queues == ("a",) for n in range(5000))
    assert len(vh.exchange("amq.topic")._routes) <= 4096


def test_delivery_records_behave_as_queue_client_pairs(broker: Broker, vh: VHost) -> None:
    vh.declare_queue("q")
    broker.publish("", "q", b"")
    Channel(vh, object(), "c").get("q")
    [record] = broker.log[-1].deliveries
    queue, client = record
    assert (queue, client) == ("q", "c") == record and record == ("q", "c") and record != ("q", "d")
    assert ("q", "c") in broker.log[-1].deliveries and hash(record) == hash(("q", "c"))
    assert record[0] == "q" and len(record) == 2 and repr(record) == "('q', 'c')"
    assert not record.redelivered and record.outcome == "auto"  # a get without acknowledgement

HEADERS_BINDINGS: dict[str, dict[str, Any]] = {
    "all-empty": {"x-match": "all"},
    "any-empty": {"x-match": "any"},
    "noxmatch": {"a": 1},
    "all-ab": {"x-match": "all", "a": 1, "b": "2"},
    "any-ab": {"x-match": "any", "a": 1, "b": "2"},
    "all-xfoo": {"x-match": "all", "x-foo": "y"},
    "any-xfoo": {"x-match": "any", "x-foo": "y"},
    "void-a": {"x-match": "all", "a": None},
    "allx-xfoo": {"x-match": "all-with-x", "x-foo": "y"},
    "anyx-xfoo": {"x-match": "any-with-x", "x-foo": "y", "q": 1},
}
HEADERS_MESSAGES: dict[str, dict[str, Any] | None] = {
    "none": None, "a1": {"a": 1}, "a1b2": {"a": 1, "b": "2"}, "a2": {"a": 2}, "b2": {"b": "2"},
    "xfoo": {"x-foo": "y"}, "a1str": {"a": "1"}, "along": {"a": 2**40},
}
# observed on RabbitMQ 3.10.8: which messages each binding received
HEADERS_OBSERVED = {
    "all-empty": list(HEADERS_MESSAGES), "any-empty": [], "noxmatch": ["a1", "a1b2"], "all-ab": ["a1b2"],
    "any-ab": ["a1", "a1b2", "b2"], "all-xfoo": list(HEADERS_MESSAGES), "any-xfoo": [],
    "void-a": ["a1", "a1b2", "a2", "a1str", "along"], "allx-xfoo": ["xfoo"], "anyx-xfoo": ["xfoo"],
}


def test_headers_exchange_matches_as_rabbitmq(broker: Broker, vh: VHost) -> None:
    vh.declare_exchange("h", "headers")
    for name, args in HEADERS_BINDINGS.items():
        vh.declare_queue(name)
        vh.bind(name, "h", "", arguments=args)
    for name, headers in HEADERS_MESSAGES.items():
        broker.publish("h", "ignored", name.encode(), {"headers": headers} if headers else None)
    for name, expected in HEADERS_OBSERVED.items():
        assert [b.decode() for b in bodies(vh, name)] == expected, name


def test_headers_exchange_does_not_take_true_for_one(broker: Broker, vh: VHost) -> None:
    # observed: a header true does not match a binding value 1, nor 1 a binding value true
    vh.declare_queue("q")
    vh.bind("q", "amq.headers", "", {"a": 1})
    vh.bind("q", "amq.headers", "", {"x-match": "any", "b": True})
    broker.publish("amq.headers", "", b"true", {"headers": {"a": True}})
    broker.publish("amq.headers", "", b"one", {"headers": {"b": 1}})
    broker.publish("amq.headers", "", b"match", {"headers": {"b": True}})
    assert bodies(vh, "q") == [b"match"]


@pytest.mark.parametrize(
    ("x_match", "text"),
    [
        ("bogus", 'PRECONDITION_FAILED - Invalid x-match field value <<"bogus">>; expected all, any, '
                  "all-with-x, or any-with-x"),
        (5, "PRECONDITION_FAILED - Invalid x-match field type signedint (value 5); expected longstr"),
    ],
)
def test_headers_binding_with_a_bad_x_match_is_refused(vh: VHost, x_match: Any, text: str) -> None:
    vh.declare_queue("q")
    with raises(PreconditionFailed, text):
        vh.bind("q", "amq.headers", "", {"x-match": x_match})
    vh.bind("q", "amq.direct", "", {"x-match": "bogus"})  # only headers exchanges look at it


def test_auto_delete_exchange_goes_with_its_last_binding(vh: VHost) -> None:
    vh.declare_exchange("ad", "fanout", auto_delete=True)
    vh.declare_exchange("ad2", "fanout", auto_delete=True)
    vh.declare_queue("q")
    vh.bind("q", "ad")
    vh.bind("q", "ad2")
    vh.unbind("q", "ad", "nothing-bound-so")  # no binding removed: stays
    assert "ad" in vh.exchanges
    vh.unbind("q", "ad")
    assert "ad" not in vh.exchanges
    vh.delete_queue("q")
    assert "ad2" not in vh.exchanges


# -- declare / delete: RabbitMQ's refusals ----------------------------------------------------------------
def test_redeclare_queue_conflicts(vh: VHost) -> None:
    vh.declare_queue("q", arguments={"x-max-length": 10})
    with raises(PreconditionFailed, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': "
                                    "received 'true' but current is 'false'"):
        vh.declare_queue("q", durable=True, auto_delete=True, arguments={"x-max-length": 10})
    with raises(PreconditionFailed, "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue 'q' in vhost "
                                    "'/': received 'true' but current is 'false'"):
        vh.declare_queue("q", auto_delete=True, arguments={"x-max-length": 10})
    with raises(PreconditionFailed, "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in vhost "
                                    "'/': received none but current is the value '10' of type 'signedint'"):
        vh.declare_queue("q")
    with raises(PreconditionFailed, "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in vhost "
                                    "'/': received '11' but current is '10'"):
        vh.declare_queue("q", arguments={"x-max-length": 11})
    with raises(PreconditionFailed, "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in vhost "
                                    "'/': received '10' but current is '10'"):
        vh.declare_queue("q", arguments={"x-max-length": "10"})
    with raises(PreconditionFailed, "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost "
                                    "'/': received the value '5' of type 'signedint' but current is none"):
        vh.declare_queue("q", arguments={"x-max-length": 10, "x-message-ttl": 5})
    with raises(ResourceLocked, LOCKED):
        vh.declare_queue("q", exclusive=True, owner=object(), arguments={"x-max-length": 10})
    # Arguments RabbitMQ does not compare may differ; x-queue-type classic is the default.
    assert vh.declare_queue("q", arguments={"x-max-length": 10, "foo": "bar", "x-queue-type": "classic"}).name == "q"


def test_redeclare_queue_reports_the_first_argument_in_rabbitmqs_order(vh: VHost) -> None:
    vh.declare_queue("q", arguments={"x-max-length": 1, "x-expires": 1000})
    with raises(PreconditionFailed, "PRECONDITION_FAILED - inequivalent arg 'x-expires' for queue 'q' in vhost "
                                    "'/': received '2000' but current is '1000'"):
        vh.declare_queue("q", arguments={"x-max-length": 2, "x-expires": 2000})


def test_redeclare_exchange_conflicts(vh: VHost) -> None:
    vh.declare_exchange("x", "direct", auto_delete=True, internal=True, arguments={"foo": 1})
    prefix = "PRECONDITION_FAILED - inequivalent arg"
    with raises(PreconditionFailed, f"{prefix} 'type' for exchange 'x' in vhost '/': received 'fanout' but "
                                    "current is 'direct'"):
        vh.declare_exchange("x", "fanout", durable=True)
    with raises(PreconditionFailed, f"{prefix} 'durable' for exchange 'x' in vhost '/': received 'true' but "
                                    "current is 'false'"):
        vh.declare_exchange("x", "direct", durable=True)
    with raises(PreconditionFailed, f"{prefix} 'auto_delete' for exchange 'x' in vhost '/': received 'false' but "
                                    "current is 'true'"):
        vh.declare_exchange("x", "direct")
    with raises(PreconditionFailed, f"{prefix} 'internal' for exchange 'x' in vhost '/': received 'false' but "
                                    "current is 'true'"):
        vh.declare_exchange("x", "direct", auto_delete=True)
    with raises(PreconditionFailed, f"{prefix} 'alternate-exchange' for exchange 'x' in vhost '/': received the "
                                    "value 'zz' of type 'longstr' but current is none"):
        vh.declare_exchange("x", "direct", auto_delete=True, internal=True, arguments={"alternate-exchange": "zz"})
    vh.declare_exchange("x", "direct", auto_delete=True, internal=True, arguments={"foo": 2})  # not compared
    vh.declare_exchange("amq.topic", "topic", durable=True)  # redeclaring a predeclared one is fine
    with raises(PreconditionFailed, f"{prefix} 'durable' for exchange 'amq.topic' in vhost '/': received 'false' "
                                    "but current is 'true'"):
        vh.declare_exchange("amq.topic", "topic")


def test_not_found_wording(broker: Broker, vh: VHost, ch: Channel) -> None:
    call: Callable[[], object]
    for call in (lambda: ch.get("q"), lambda: vh.declare_queue("q", passive=True),
                 lambda: ch.consume("q", lambda d: None), lambda: vh.bind("q", "amq.topic", "k"),
                 lambda: vh.purge_queue("q")):
        with raises(NotFound, "NOT_FOUND - no queue 'q' in vhost '/'"):
            call()
    vh.declare_queue("q")
    for call in (lambda: broker.publish("x", "k", b""), lambda: vh.declare_exchange("x", passive=True),
                 lambda: vh.bind("q", "x", "k")):
        with raises(NotFound, "NOT_FOUND - no exchange 'x' in vhost '/'"):
            call()
    # observed: with both missing, bind names the exchange
    with raises(NotFound, "NOT_FOUND - no exchange 'x' in vhost '/'"):
        vh.bind("nq", "x", "k")


def test_access_refused(broker: Broker, vh: VHost) -> None:
    default = "ACCESS_REFUSED - operation not permitted on the default exchange"
    for call in (lambda: vh.declare_exchange("", "direct"), lambda: vh.declare_exchange("", passive=True),
                 lambda: vh.delete_exchange(""), lambda: vh.bind("q", "", "q"), lambda: vh.unbind("q", "", "q")):
        with raises(AccessRefused, default):
            call()
    with raises(AccessRefused, "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'"):
        vh.declare_exchange("amq.foo", "direct")
    with raises(AccessRefused, "ACCESS_REFUSED - deletion of system exchange 'amq.topic' in vhost '/' not allowed"):
        vh.delete_exchange("amq.topic")
    with raises(AccessRefused, "ACCESS_REFUSED - queue name 'amq.foo' contains reserved prefix 'amq.*'"):
        vh.declare_queue("amq.foo")
    generated = vh.declare_queue("").name
    assert generated.startswith("amq.gen-") and len(generated) == len("amq.gen-") + 22
    with raises(AccessRefused, f"ACCESS_REFUSED - queue name '{generated}' contains reserved prefix 'amq.*'"):
        vh.declare_queue(generated)  # observed: not even an existing one, except passively
    assert vh.declare_queue(generated, passive=True).name == generated
    vh.declare_exchange("int", "fanout", internal=True)
    with raises(AccessRefused, "ACCESS_REFUSED - cannot publish to internal exchange 'int' in vhost '/'"):
        broker.publish("int", "k", b"")
    with raises(AccessRefused, "ACCESS_REFUSED - cannot publish to internal exchange 'amq.rabbitmq.trace' in "
                               "vhost '/'"):
        broker.publish("amq.rabbitmq.trace", "k", b"")


def test_unknown_exchange_type_is_command_invalid(vh: VHost) -> None:
    with raises(CommandInvalid, "COMMAND_INVALID - unknown exchange type 'foo'"):
        vh.declare_exchange("x", "foo")


def test_delete_semantics(vh: VHost, ch: Channel) -> None:
    assert vh.delete_queue("missing") == 0  # not an error in 3.x
    vh.delete_exchange("missing")  # nor this
    vh.declare_queue("q")
    vh.broker.publish("", "q", b"x")
    with raises(PreconditionFailed, "PRECONDITION_FAILED - queue 'q' in vhost '/' not empty"):
        vh.delete_queue("q", if_empty=True)
    ch.consume("q", lambda d: None)
    with raises(PreconditionFailed, "PRECONDITION_FAILED - queue 'q' in vhost '/' in use"):
        vh.delete_queue("q", if_unused=True)
    vh.declare_exchange("x", "fanout")
    vh.bind("q", "x")
    with raises(PreconditionFailed, "PRECONDITION_FAILED - exchange 'x' in vhost '/' in use"):
        vh.delete_exchange("x", if_unused=True)
    assert vh.delete_queue("q") == 0  # the message went to the consumer
    assert vh.exchange("x").bindings == {}
    vh.delete_exchange("x", if_unused=True)


def test_unbind_is_lenient(vh: VHost) -> None:
    # observed: a missing queue, exchange or binding, or another connection's exclusive queue, is no error
    vh.unbind("nq", "nx", "k")
    vh.unbind("nq", "amq.topic", "k")
    vh.declare_queue("q", exclusive=True, owner=object())
    vh.bind("q", "amq.topic", "k", owner=vh.queue("q").exclusive_owner)
    vh.unbind("q", "amq.topic", "k", owner=object())
    assert vh.exchange("amq.topic").bindings == {}


# -- queue arguments -------------------------------------------------------------------------------------
BAD_ARGUMENTS = [  # observed, each the full text after "PRECONDITION_FAILED - "
    ({"x-max-length": "10"},
     "invalid arg 'x-max-length' for queue 'q' in vhost '/': \"expected integer, got longstr\""),
    ({"x-max-length": True}, "invalid arg 'x-max-length' for queue 'q' in vhost '/': \"expected integer, got bool\""),
    ({"x-max-length": -1}, "invalid arg 'x-max-length' for queue 'q' in vhost '/': {value_negative,-1}"),
    ({"x-expires": 0}, "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"),
    ({"x-max-length": -1, "x-expires": 0}, "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"),
    ({"x-message-ttl": -1}, "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"),
    ({"x-max-priority": 300}, "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,300}"),
    ({"x-overflow": "foo"}, "invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"),
    ({"x-overflow": 5}, "invalid arg 'x-overflow' for queue 'q' in vhost '/': {unacceptable_type,signedint}"),
    ({"x-single-active-consumer": 1},
     "invalid arg 'x-single-active-consumer' for queue 'q' in vhost '/': {unacceptable_type,signedint}"),
    ({"x-dead-letter-routing-key": "k"},
     "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined"),
    ({"x-dead-letter-exchange": 5, "x-max-length": -1},
     "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"),
    ({"x-queue-mode": "bogus"},
     "invalid arg 'x-queue-mode' for queue 'q' in vhost '/': \"unsupported queue mode 'bogus'\""),
    ({"x-queue-type": "bogus"},
     "invalid arg 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'bogus'\""),
    ({"x-delivery-limit": 5},
     "invalid arg 'x-delivery-limit' for queue 'q' in vhost '/' of queue type rabbit_classic_queue"),
    ({"x-max-in-memory-length": "x"},
     "invalid arg 'x-max-in-memory-length' for queue 'q' in vhost '/' of queue type rabbit_classic_queue"),
]


@pytest.mark.parametrize(("arguments", "text"), BAD_ARGUMENTS)
def test_bad_queue_arguments(vh: VHost, arguments: dict[str, Any], text: str) -> None:
    with raises(PreconditionFailed, "PRECONDITION_FAILED - " + text):
        vh.declare_queue("q", arguments=arguments)
    assert "q" not in vh.queues


@pytest.mark.parametrize(
    ("expiration", "text"),
    [("abc", "no_integer"), ("", "no_integer"), (" 5", "no_integer"), ("-5", "{value_negative,-5}"),
     ("5.0", '{leftover_string,".0"}')],
)
def test_bad_expiration_is_refused_at_publish(broker: Broker, expiration: str, text: str) -> None:
    # observed: refused even when unroutable
    with raises(PreconditionFailed, f"PRECONDITION_FAILED - invalid expiration '{expiration}': {text}"):
        broker.publish("", "nowhere", b"", {"expiration": expiration})
    assert list(broker.log) == []


@pytest.mark.parametrize("expiration", ["+5", "05", "0", "4294967296"])
def test_expirations_rabbitmq_accepts(broker: Broker, vh: VHost, expiration: str) -> None:
    vh.declare_queue("q")
    assert broker.publish("", "q", b"", {"expiration": expiration}).queues == ("q",)


# -- exclusive, auto-delete, x-expires ----------------------------------------------------------------------
def test_exclusive_queue_belongs_to_its_connection(broker: Broker, vh: VHost) -> None:
    mine, other = object(), object()
    vh.declare_queue("q", exclusive=True, owner=mine)
    theirs = Channel(vh, other)
    for call in (lambda: vh.declare_queue("q", passive=True, owner=other),
                 lambda: vh.declare_queue("q", exclusive=True, owner=other),
                 lambda: vh.declare_queue("q", owner=other),
                 lambda: theirs.get("q"), lambda: theirs.consume("q", lambda d: None),
                 lambda: vh.bind("q", "amq.topic", "k", owner=other),
                 lambda: vh.purge_queue("q", owner=other), lambda: vh.delete_queue("q", owner=other)):
        with raises(ResourceLocked, LOCKED):
            call()
    with raises(ResourceLocked, LOCKED):
        vh.declare_queue("q", owner=mine)  # not exclusive this time: a mismatch, even for the owner
    assert broker.publish("", "q", b"anyone may publish").queues == ("q",)
    assert Channel(vh, mine).get("q") is not None
    vh.declare_queue("kept")
    vh.connection_closed(mine)
    assert set(vh.queues) == {"kept"}


def test_exclusive_queue_needs_an_owner(vh: VHost) -> None:
    with pytest.raises(ValueError):
        vh.declare_queue("q", exclusive=True)


def test_auto_delete_queue_goes_when_its_last_consumer_does(vh: VHost, ch: Channel) -> None:
    deleted: list[str] = []
    vh.broker.on("queue_deleted", lambda vhost, name: deleted.append(name))
    vh.declare_queue("q", auto_delete=True)
    vh.declare_queue("never-consumed", auto_delete=True)
    t1 = ch.consume("q", lambda d: None)
    t2 = ch.consume("q", lambda d: None)
    ch.cancel(t1)
    assert "q" in vh.queues
    ch.cancel(t2)
    assert "q" not in vh.queues and deleted == ["q"]
    assert "never-consumed" in vh.queues  # a queue that never had a consumer stays
    vh.declare_queue("q2", auto_delete=True)
    ch.consume("q2", lambda d: None)
    ch.close()
    assert "q2" not in vh.queues


def test_x_expires_deletes_an_unused_queue_on_the_clock(vh: VHost, ch: Channel, clock: VirtualClock) -> None:
    vh.declare_queue("q", arguments={"x-expires": 1000})
    clock.advance(0.9)
    vh.broker.publish("", "q", b"publishing is not using")
    clock.advance(0.1)
    assert "q" not in vh.queues

    vh.declare_queue("q", arguments={"x-expires": 1000})
    clock.advance(0.9)
    assert ch.get("q") is None  # basic.get is a use: the countdown restarts
    clock.advance(0.9)
    vh.declare_queue("q", arguments={"x-expires": 1000})  # so is a redeclare
    clock.advance(0.9)
    vh.declare_queue("q", passive=True)  # and a passive one
    clock.advance(0.9)
    tag = ch.consume("q", lambda d: None)
    clock.advance(100)
    assert "q" in vh.queues  # never while it has a consumer
    ch.cancel(tag)
    clock.advance(0.999)
    assert "q" in vh.queues
    clock.advance(0.001)
    assert "q" not in vh.queues


# -- consumers --------------------------------------------------------------------------------------------
def test_consumers_take_turns_within_their_prefetch(broker: Broker, vh: VHost, ch: Channel) -> None:
    vh.declare_queue("q")
    got: dict[str, list[Delivery]] = {"a": [], "b": [], "c": []}
    ch.consume("q", got["a"].append, prefetch=1, tag="a")
    ch.consume("q", got["b"].append, prefetch=2, tag="b")
    ch.consume("q", got["c"].append, no_ack=True, prefetch=1, tag="c")  # no_ack: no window
    for i in range(8):
        broker.publish("", "q", b"%d" % i)
    # As rabbit_queue_consumers: a consumer goes to the back after each delivery and leaves the rotation when
    # found with a full window; an ack puts it back, at the end.
    assert [d.body for d in got["a"]] == [b"0"]
    assert [d.body for d in got["b"]] == [b"1", b"3"]
    assert [d.body for d in got["c"]] == [b"2", b"4", b"5", b"6", b"7"]
    assert all(d.consumer_tag == k for k, ds in got.items() for d in ds)
    assert vh.queue("q").unacked == 3
    ch.ack(got["a"][0].delivery_tag)
    for i in (8, 9, 10):
        broker.publish("", "q", b"%d" % i)
    assert [d.body for d in got["c"]][-2:] == [b"8", b"10"]
    assert [d.body for d in got["a"]] == [b"0", b"9"]


def test_ack_frees_the_window_and_queued_messages_flow(broker: Broker, vh: VHost, ch: Channel) -> None:
    vh.declare_queue("q")
    for i in range(3):
        broker.publish("", "q", b"%d" % i)
    got: list[Delivery] = []
    ch.consume("q", got.append, prefetch=2)
    assert [d.body for d in got] == [b"0", b"1"]
    assert vh.queue("q").message_count == 1
    ch.ack(got[1].delivery_tag, multiple=True)
    assert [d.body for d in got] == [b"0", b"1", b"2"]


def test_channel_close_requeues_unacked_in_order(broker: Broker, vh: VHost) -> None:
    vh.declare_queue("q")
    for i in range(5):
        broker.publish("", "q", b"%d" % i)
    first = Channel(vh, object())
    got: list[Delivery] = []
    first.consume("q", got.append, prefetch=2)  # b"0", b"1"
    assert first.get("q", no_ack=False).body == b"2"  # type: ignore[union-attr]
    first.ack(got[1].delivery_tag)  # the consumer takes b"3"
    assert [d.body for d in got] == [b"0", b"1", b"3"]
    first.close()
    assert first.consumers == {}
    # b"0", b"2" and b"3" come back to their places, ahead of b"4", flagged as redelivered.
    second = Channel(vh, object())
    out = [(d.body, d.redelivered) for d in iter(lambda: second.get("q"), None)]
    assert out == [(b"0", True), (b"2", True), (b"3", True), (b"4", False)]


def test_channel_close_hands_requeued_messages_to_other_consumers(broker: Broker, vh: VHost) -> None:
    vh.declare_queue("q")
    leaving, staying = Channel(vh, object()), Channel(vh, object())
    got_leaving: list[Delivery] = []
    got_staying: list[Delivery] = []
    leaving.consume("q", got_leaving.append, prefetch=10)
    broker.publish("", "q", b"1")
    broker.publish("", "q", b"2")
    staying.consume("q", got_staying.append, prefetch=10)
    leaving.close()
    assert [(d.body, d.redelivered) for d in got_staying] == [(b"1", True), (b"2", True)]
    assert len(got_leaving) == 2


def test_nack_requeue_keeps_the_place_and_reject_drops(broker: Broker, vh: VHost, ch: Channel) -> None:
    vh.declare_queue("q")
    for i in range(4):
        broker.publish("", "q", b"%d" % i)
    d = [ch.get("q", no_ack=False) for _ in range(3)]
    assert all(x is not None for x in d)
    ch.nack(d[2].delivery_tag, requeue=True)  # type: ignore[union-attr]
    ch.nack(d[0].delivery_tag, requeue=True)  # type: ignore[union-attr]
    ch.reject(d[1].delivery_tag, requeue=False)  # type: ignore[union-attr]
    # observed: [(b'0', True), (b'2', True), (b'3', False)]
    assert [(x.body, x.redelivered) for x in iter(lambda: ch.get("q"), None)] == [
        (b"0", True), (b"2", True), (b"3", False)]


def test_delivery_tags_and_multiple_acks(broker: Broker, vh: VHost, ch: Channel) -> None:
    vh.declare_queue("q")
    for i in range(4):
        broker.publish("", "q", b"%d" % i)
    tags = [ch.get("q", no_ack=False).delivery_tag for _ in range(3)]  # type: ignore[union-attr]
    assert tags == [1, 2, 3]
    ch.ack(tags[1])
    # observed: multiple=True on a tag that is no longer outstanding is an error, whatever lies below it
    with raises(PreconditionFailed, "PRECONDITION_FAILED - unknown delivery tag 2"):
        ch.ack(tags[1], multiple=True)
    with raises(PreconditionFailed, "PRECONDITION_FAILED - unknown delivery tag 9"):
        ch.nack(9)
    ch.ack(0, multiple=True)  # 0 + multiple: everything outstanding
    assert ch.unacked_count == 0
    ch.ack(0, multiple=True)  # observed: fine with nothing outstanding too
    d = ch.get("q", no_ack=False)
    assert d is not None and d.delivery_tag == 4 and d.message_count == 0


def test_ack_after_the_queue_was_deleted_is_accepted(broker: Broker, vh: VHost, ch: Channel) -> None:
    vh.declare_queue("q")
    vh.declare_queue("q2")
    broker.publish("", "q", b"x")
    broker.publish("", "q2", b"y")
    got: list[Delivery] = []
    cancelled: list[str] = []
    ch.on_cancel = cancelled.append
    ch.consume("q2", got.append, tag="t")
    d = ch.get("q", no_ack=False)
    assert d is not None
    vh.delete_queue("q")
    vh.delete_queue("q2")
    assert cancelled == ["t"]
    ch.ack(d.delivery_tag)  # observed: no error
    ch.nack(got[0].delivery_tag, requeue=True)
    assert ch.unacked_count == 0


# -- length limits and TTL ------------------------------------------------------------------------------------
def test_max_length_drop_head(broker: Broker, vh: VHost) -> None:
    vh.declare_queue("q", arguments={"x-max-length": 2})
    for i in range(4):
        assert broker.publish("", "q", b"%d" % i).queues == ("q",)
    assert bodies(vh, "q") == [b"2", b"3"]


def test_max_length_reject_publish(broker: Broker, vh: VHost) -> None:
    vh.declare_queue("q", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    assert [broker.publish("", "q", b"%d" % i).queues for i in range(3)] == [("q",), ("q",), ()]
    assert bodies(vh, "q") == [b"0", b"1"]


def test_max_length_bytes(broker: Broker, vh: VHost) -> None:
    # observed: drop-head [b"12345", b"1234", b"12"] -> [b"1234", b"12"];
    # reject-publish [b"12345", b"12345", b"1", b""] -> [b"12345", b"12345", b""]
    vh.declare_queue("d", arguments={"x-max-length-bytes": 10})
    vh.declare_queue("r", arguments={"x-max-length-bytes": 10, "x-overflow": "reject-publish"})
    for body in (b"12345", b"1234", b"12"):
        broker.publish("", "d", body)
    for body in (b"12345", b"12345", b"1", b""):
        broker.publish("", "r", body)
    assert bodies(vh, "d") == [b"1234", b"12"]
    assert bodies(vh, "r") == [b"12345", b"12345", b""]
    assert vh.queue("d").ready_bytes == 6


def test_requeue_beyond_max_length(broker: Broker, vh: VHost, ch: Channel) -> None:
    # observed: drop-head drops the requeued head; reject-publish keeps both
    vh.declare_queue("d", arguments={"x-max-length": 1})
    vh.declare_queue("r", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    for q in ("d", "r"):
        broker.publish("", q, b"A")
        a = ch.get(q, no_ack=False)
        broker.publish("", q, b"B")
        ch.nack(a.delivery_tag, requeue=True)  # type: ignore[union-attr]
    assert bodies(vh, "d") == [b"B"]
    assert bodies(vh, "r") == [b"A", b"B"]


def test_max_length_zero_with_a_consumer(broker: Broker, vh: VHost, ch: Channel) -> None:
    # observed: drop-head hands it to a waiting consumer; reject-publish refuses it anyway
    vh.declare_queue("d", arguments={"x-max-length": 0})
    vh.declare_queue("r", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    got: list[Delivery] = []
    ch.consume("d", got.append, no_ack=True)
    ch.consume("r", got.append, no_ack=True)
    assert broker.publish("", "d", b"y").queues == ("d",)
    assert broker.publish("", "r", b"z").queues == ()
    assert [d.body for d in got] == [b"y"]


def test_message_ttl_only_on_the_clock(broker: Broker, vh: VHost, ch: Channel, clock: VirtualClock) -> None:
    vh.declare_queue("q", arguments={"x-message-ttl": 1000})
    broker.publish("", "q", b"a")
    clock.advance(0.5)
    broker.publish("", "q", b"b")
    clock.advance(0.4999)
    assert bodies(vh, "q") == [b"a", b"b"]
    clock.advance(0.0001)
    assert bodies(vh, "q") == [b"b"]
    clock.advance(0.5)
    assert bodies(vh, "q") == []


def test_message_ttl_zero_reaches_a_waiting_consumer_only(broker: Broker, vh: VHost, ch: Channel) -> None:
    vh.declare_queue("q", arguments={"x-message-ttl": 0})
    broker.publish("", "q", b"x")
    assert bodies(vh, "q") == []
    got: list[Delivery] = []
    ch.consume("q", got.append, no_ack=True)
    broker.publish("", "q", b"y")
    assert [d.body for d in got] == [b"y"]  # observed


class TickingClock(VirtualClock):
    """A clock that moves a microsecond every time it is read, as a wall clock does between two reads."""

    def now(self) -> float:
        self._now += 1e-6
        return self._now


@pytest.mark.parametrize("clock_kind", ["virtual", "ticking"])
@pytest.mark.parametrize("ttl", [{"arguments": {"x-message-ttl": 0}}, {"expiration": "0"}],
                         ids=["x-message-ttl", "expiration"])
def test_ttl_zero_goes_to_consumers_with_room_and_is_dropped_otherwise(clock_kind: str, ttl: dict[str, Any]) -> None:
    # observed: delivered to consumers with free prefetch, dropped (expired) for one with a full window; a
    # basic.get never sees it. A clock that moves on its own (the wall clock) must not change that.
    clock = VirtualClock() if clock_kind == "virtual" else TickingClock()
    broker = Broker(clock)
    vh = broker.vhost()
    ch = Channel(vh, object(), "c")
    dropped: list[tuple[bytes, str]] = []
    broker.on("dropped", lambda vhost, queue, message, reason: dropped.append((message.body, reason)))
    props = {"expiration": ttl["expiration"]} if "expiration" in ttl else None
    vh.declare_queue("q", arguments=ttl.get("arguments", {}))
    broker.publish("", "q", b"nobody", props)
    assert ch.get("q") is None
    got: list[Delivery] = []
    ch.consume("q", got.append, prefetch=1)
    broker.publish("", "q", b"taken", props)
    broker.publish("", "q", b"window full", props)
    assert [d.body for d in got] == [b"taken"]
    ch.ack(got[0].delivery_tag)
    assert [d.body for d in got] == [b"taken"]  # the dropped one does not come back
    assert bodies(vh, "q") == []
    assert dropped == [(b"nobody", "expired"), (b"window full", "expired")]


def test_expiration_zero_behind_another_message_is_dropped_at_the_head(broker: Broker, vh: VHost,
                                                                         ch: Channel) -> None:
    # observed (management API basic.get): A, then nothing; B expired behind A and went when it was the head
    vh.declare_queue("q")
    broker.publish("", "q", b"A")
    broker.publish("", "q", b"B", {"expiration": "0"})
    got: list[Delivery] = []
    ch.consume("q", got.append, prefetch=1)
    assert [d.body for d in got] == [b"A"]
    ch.ack(got[0].delivery_tag)
    assert [d.body for d in got] == [b"A"]
    assert bodies(vh, "q") == []


def test_per_message_expiration_only_at_the_head(broker: Broker, vh: VHost, ch: Channel,
                                                 clock: VirtualClock) -> None:
    # observed: count 3 after B expired behind A; get A -> message_count 1; then only C
    vh.declare_queue("q")
    broker.publish("", "q", b"A")
    broker.publish("", "q", b"B", {"expiration": "50"})
    broker.publish("", "q", b"C")
    clock.advance(0.3)
    assert vh.queue("q").message_count == 3
    d = ch.get("q")
    assert d is not None and d.body == b"A" and d.message_count == 1
    assert bodies(vh, "q") == [b"C"]


def test_the_shorter_of_queue_ttl_and_expiration_wins(broker: Broker, vh: VHost, clock: VirtualClock) -> None:
    vh.declare_queue("q", arguments={"x-message-ttl": 2000})
    broker.publish("", "q", b"short", {"expiration": "500"})
    broker.publish("", "q", b"long", {"expiration": "5000"})
    clock.advance(0.5)
    assert bodies(vh, "q") == [b"long"]
    clock.advance(1.5)
    assert bodies(vh, "q") == []


def test_requeued_message_keeps_its_deadline(broker: Broker, vh: VHost, ch: Channel, clock: VirtualClock) -> None:
    vh.declare_queue("q", arguments={"x-message-ttl": 1000})
    broker.publish("", "q", b"x")
    d = ch.get("q", no_ack=False)
    clock.advance(5)
    ch.nack(d.delivery_tag, requeue=True)  # type: ignore[union-attr]
    assert bodies(vh, "q") == []


# -- dead-lettering -------------------------------------------------------------------------------------------
def _dlx(vh: VHost, **arguments: Any) -> None:
    vh.declare_exchange("dlx", "fanout")
    vh.declare_queue("dlq")
    vh.bind("dlq", "dlx")
    vh.declare_queue("src", arguments={"x-dead-letter-exchange": "dlx", **arguments})


def _death(message: Message) -> dict[str, Any]:
    (death,) = message.headers["x-death"]
    assert isinstance(death.pop("time"), int)
    return dict(death)


def test_dead_letter_on_overflow_and_reject(broker: Broker, vh: VHost, ch: Channel) -> None:
    _dlx(vh, **{"x-max-length": 1})
    broker.publish("", "src", b"m1", {"expiration": "100000", "headers": {"h": 1}})
    broker.publish("", "src", b"m2", {"expiration": "100000"})
    d = ch.get("src", no_ack=False)
    ch.reject(d.delivery_tag, requeue=False)  # type: ignore[union-attr]
    m1, m2 = vh.queue("dlq").peek()
    # observed, field for field (time is an AMQP timestamp there)
    assert (m1.body, m1.exchange, m1.routing_key) == (b"m1", "dlx", "src")
    assert "expiration" not in m1.properties
    assert m1.headers["h"] == 1
    assert _death(m1) == {"count": 1, "reason": "maxlen", "queue": "src", "exchange": "",
                          "routing-keys": ["src"], "original-expiration": "100000"}
    assert m1.headers["x-first-death-reason"] == "maxlen"
    assert m1.headers["x-first-death-queue"] == "src"
    assert m1.headers["x-first-death-exchange"] == ""
    assert _death(m2)["reason"] == "rejected"
    assert [e.protocol for e in broker.log] == ["api", "api", "dead-letter", "dead-letter"]
    assert broker.log[2].queues == ("dlq",)


def test_dead_letter_on_expiry_with_routing_key(broker: Broker, vh: VHost, clock: VirtualClock) -> None:
    vh.declare_queue("dlq")
    vh.bind("dlq", "amq.direct", "dead")
    vh.declare_queue("src", arguments={"x-dead-letter-exchange": "amq.direct", "x-dead-letter-routing-key": "dead",
                                       "x-message-ttl": 100})
    broker.publish("", "src", b"x")
    clock.advance(0.1)
    (m,) = vh.queue("dlq").peek()
    assert m.routing_key == "dead"
    assert _death(m) == {"count": 1, "reason": "expired", "queue": "src", "exchange": "", "routing-keys": ["src"]}


def test_reject_publish_dlx(broker: Broker, vh: VHost) -> None:
    _dlx(vh, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    assert broker.publish("", "src", b"kept").queues == ("src",)
    assert broker.publish("", "src", b"refused").queues == ()
    assert bodies(vh, "src") == [b"kept"]
    (m,) = vh.queue("dlq").peek()
    assert m.body == b"refused" and _death(m)["reason"] == "maxlen"


def test_dead_letter_cycles(broker: Broker, vh: VHost, ch: Channel, clock: VirtualClock) -> None:
    # observed: an expiry-only cycle is dropped (even with a junk x-death header); a reject in the loop keeps
    # it going, with one x-death entry per (queue, reason), counted
    def pair(a: str, b: str, ttl_a: int | None) -> None:
        for me, other, ttl in ((a, b, ttl_a), (b, a, 30)):
            args: dict[str, Any] = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": other}
            if ttl is not None:
                args["x-message-ttl"] = ttl
            vh.declare_queue(me, arguments=args)

    pair("t1", "t2", 50)
    broker.publish("", "t1", b"cyc", {"headers": {"x-death": "junk"}})
    clock.advance(1)
    assert bodies(vh, "t1") == bodies(vh, "t2") == []

    pair("c1", "c2", None)
    broker.publish("", "c1", b"r")
    for _ in range(3):
        d = ch.get("c1", no_ack=False)
        ch.reject(d.delivery_tag, requeue=False)  # type: ignore[union-attr]
        clock.advance(0.2)
    (m,) = vh.queue("c1").peek()
    deaths = [{k: v for k, v in x.items() if k != "time"} for x in m.headers["x-death"]]
    assert deaths == [
        {"count": 3, "exchange": "", "queue": "c2", "reason": "expired", "routing-keys": ["c2"]},
        {"count": 3, "exchange": "", "queue": "c1", "reason": "rejected", "routing-keys": ["c1"]},
    ]
    assert m.headers["x-first-death-reason"] == "rejected" and m.headers["x-first-death-queue"] == "c1"


def test_no_dlx_or_missing_dlx_drops(broker: Broker, vh: VHost, ch: Channel) -> None:
    dropped: list[tuple[str, bytes, str]] = []
    broker.on("dropped", lambda vhost, queue, message, reason: dropped.append((queue, message.body, reason)))
    vh.declare_queue("q", arguments={"x-max-length": 1, "x-dead-letter-exchange": "not-there"})
    broker.publish("", "q", b"1")
    broker.publish("", "q", b"2")
    assert dropped == [("q", b"1", "maxlen")]
    assert len(broker.log) == 2


# -- the message log and event hooks ---------------------------------------------------------------------------
def test_message_log_records_routing_and_deliveries(broker: Broker, vh: VHost, clock: VirtualClock) -> None:
    vh.declare_queue("a")
    vh.declare_queue("b")
    vh.bind("a", "amq.topic", "x.*")
    vh.bind("b", "amq.topic", "#")
    clock.advance(3)
    routed = broker.publish("amq.topic", "x.y", b"hello", {"content_type": "text/plain"}, client_id="pub")
    unroutable = broker.publish("amq.direct", "nobody", b"lost")
    consumer = Channel(vh, object(), "sub")
    consumer.consume("a", lambda d: None, no_ack=True)
    Channel(vh, object(), "getter").get("b")
    assert list(broker.log) == [routed, unroutable]
    assert (routed.seq, routed.time, routed.protocol, routed.client_id, routed.exchange, routed.routing_key) == (
        1, 3.0, "api", "pub", "amq.topic", "x.y")
    assert routed.queues == ("a", "b") and routed.routed
    assert routed.properties == {"content_type": "text/plain"}
    assert routed.deliveries == [("a", "sub"), ("b", "getter")]
    assert routed.topic == "x/y"
    assert not unroutable.routed and unroutable.queues == ()
    assert "unroutable" in unroutable.describe() and "-> a, b" in routed.describe()


def test_message_log_limit(vh: VHost, clock: VirtualClock) -> None:
    broker = Broker(clock, log_limit=2)
    broker.vhost().declare_queue("q")
    for i in range(5):
        broker.publish("", "q", b"%d" % i)
    assert [e.seq for e in broker.log] == [4, 5]
    Channel(broker.vhost(), object(), "c").get("q")  # delivers seq 1, no longer logged: no error
    assert broker.find_logged(5) is broker.log[-1] and broker.find_logged(1) is None


def test_event_hooks(broker: Broker, vh: VHost, ch: Channel) -> None:
    seen: list[tuple[str, Any]] = []
    for event in ("publish", "route", "deliver", "queue_deleted", "dropped"):
        broker.on(event, lambda *args, event=event: seen.append((event, args)))
    vh.declare_queue("q", arguments={"x-max-length": 1})
    entry = broker.publish("", "q", b"1")
    broker.publish("", "q", b"2")
    ch.get("q")
    vh.delete_queue("q")
    names = [e for e, _ in seen]
    assert names == ["publish", "route", "publish", "dropped", "route", "deliver", "queue_deleted"]
    assert seen[0][1] == (entry,) and seen[1][1] == (entry,)
    assert seen[5][1][1:] == ("q", "client-a")
    assert seen[6][1] == ("/", "q")
    remove = broker.on("publish", lambda e: seen.append(("again", e)))
    remove()
    remove()  # twice is harmless
    broker.publish("", "nowhere", b"")
    assert ("again", broker.log[-1]) not in seen
    with pytest.raises(ValueError, match="unknown event"):
        broker.on("nope", lambda: None)


# -- the virtual clock -------------------------------------------------------------------------------------------
def test_virtual_clock_fires_due_timers_in_order(clock: VirtualClock) -> None:
    fired: list[tuple[str, float]] = []

    def note(name: str) -> None:
        fired.append((name, clock.now()))
        if name == "b":
            clock.call_later(0.5, note, "from-b")  # due within the same advance
            clock.call_later(10, note, "later")

    clock.call_later(2, note, "c")
    clock.call_later(1, note, "b")
    clock.call_later(1, note, "b2")  # same time: scheduling order
    cancelled = clock.call_later(0.5, note, "cancelled")
    cancelled.cancel()
    clock.advance(2)
    assert fired == [("b", 1.0), ("b2", 1.0), ("from-b", 1.5), ("c", 2.0)]
    assert clock.now() == 2.0 and clock.pending() == 1 and clock.next_deadline() == 11.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_virtual_clock_small_steps_reach_a_deadline(clock: VirtualClock) -> None:
    fired: list[float] = []
    clock.call_later(1.0, lambda: fired.append(clock.now()))
    for _ in range(10):
        clock.advance(0.1)  # adds up to 0.9999999999999999
    assert fired == [1.0]
    assert clock.now() >= 0.9999999999999999


def test_ten_small_steps_expire_a_one_second_ttl(broker: Broker, vh: VHost, clock: VirtualClock) -> None:
    vh.declare_queue("q", arguments={"x-message-ttl": 1000})
    broker.publish("", "q", b"x")
    for _ in range(10):
        clock.advance(0.1)
    assert bodies(vh, "q") == []


def test_cancelled_timers_do_not_pile_up(clock: VirtualClock) -> None:
    fired: list[int] = []
    keep = [clock.call_later(5, fired.append, i) for i in range(3)]
    for i in range(10_000):
        clock.call_later(100 + i, fired.append, i).cancel()
    assert clock.pending() == 3
    assert len(clock._timers) < 200  # the heap is rebuilt once the cancelled handles are the majority
    keep[1].cancel()
    keep[1].cancel()  # twice is harmless
    clock.advance(10_000)
    assert fired == [0, 2] and clock.pending() == 0 and clock.next_deadline() is None


def test_a_ttl_queue_under_traffic_keeps_few_timers(broker: Broker, vh: VHost, ch: Channel,
                                                    clock: VirtualClock) -> None:
    vh.declare_queue("q", arguments={"x-message-ttl": 60_000})
    for _ in range(5_000):
        broker.publish("", "q", b"x")
        ch.get("q")
        clock.advance(0.001)
    assert len(clock._timers) < 200


def test_reset_empties_the_node_as_if_it_had_just_started(clock: VirtualClock, broker: Broker) -> None:
    seen: list[str] = []
    broker.on("route", lambda entry: seen.append(entry.routing_key))
    vh = broker.add_vhost("tenant")
    vh.declare_queue("q", arguments={"x-expires": 1000, "x-message-ttl": 500})
    vh.declare_exchange("x", "topic")
    vh.bind("q", "x", "#")
    broker.publish("x", "k", b"m", vhost="tenant")
    broker.publish_hooks.append(lambda entry: "drop")
    broker.users["added"] = "over HTTP"
    expired: list[str] = []
    broker.on("queue_deleted", lambda vhost, name: expired.append(name))
    broker.on("dropped", lambda vhost, queue, message, reason: expired.append(reason))
    broker.reset({"guest": "guest"}, ("/", "other"))
    assert list(broker.vhosts) == ["/", "other"] and broker.users == {"guest": "guest"}
    assert broker.log == deque() and broker.publish_hooks == []
    assert broker.vhost("/").queues == {} and "x" not in broker.vhost("/").exchanges
    clock.advance(2)  # the old queue's TTL and x-expires timers were cancelled with it
    assert expired == []
    broker.publish("amq.topic", "after", b"m", vhost="other")  # listeners stay
    assert seen == ["k", "after"] and broker.log[-1].routing_key == "after"
