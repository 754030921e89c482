"""AMQP 0-9-1: exchange and queue declare, delete, purge, and their errors, with RabbitMQ's codes and texts."""

from __future__ import annotations

import pytest
from amqpkit import channel, channel_error, connect, connection_error
from contractlib import Backend


@pytest.mark.parametrize("kind", ["direct", "fanout", "topic", "headers"])
def test_exchange_declare_then_passive(backend: Backend, kind: str) -> None:
    ch = channel(backend)
    ch.exchange_declare(f"ex-{kind}", kind, durable=True)
    ch.exchange_declare(f"ex-{kind}", passive=True)
    ch.exchange_declare(f"ex-{kind}", kind, durable=True)  # an equivalent redeclare is fine


def test_exchange_redeclare_with_another_type(backend: Backend) -> None:
    ch = channel(backend)
    ch.exchange_declare("ex", "topic")
    assert channel_error(lambda: ch.exchange_declare("ex", "direct")) == (
        406, f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'ex' in vhost '{backend.vhost}': "
             "received 'direct' but current is 'topic'")


def test_exchange_redeclare_with_another_durability(backend: Backend) -> None:
    ch = channel(backend)
    ch.exchange_declare("ex", "topic", durable=True)
    assert channel_error(lambda: ch.exchange_declare("ex", "topic")) == (
        406, f"PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'ex' in vhost '{backend.vhost}': "
             "received 'false' but current is 'true'")


def test_exchange_with_the_reserved_prefix(backend: Backend) -> None:
    ch = channel(backend)
    assert channel_error(lambda: ch.exchange_declare("amq.mine", "topic")) == (
        403, "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'")


def test_passive_declare_of_a_missing_exchange(backend: Backend) -> None:
    ch = channel(backend)
    assert channel_error(lambda: ch.exchange_declare("missing", passive=True)) == (
        404, f"NOT_FOUND - no exchange 'missing' in vhost '{backend.vhost}'")


def test_an_unknown_exchange_type_closes_the_connection(backend: Backend) -> None:
    ch = channel(backend)
    assert connection_error(lambda: ch.exchange_declare("ex", "no-such-type")) == (
        503, "COMMAND_INVALID - unknown exchange type 'no-such-type'")


def test_system_exchanges_cannot_be_deleted(backend: Backend) -> None:
    ch = channel(backend)
    assert channel_error(lambda: ch.exchange_delete("amq.topic")) == (
        403, f"ACCESS_REFUSED - deletion of system exchange 'amq.topic' in vhost '{backend.vhost}' not allowed")


def test_exchange_delete_if_unused(backend: Backend) -> None:
    ch = channel(backend)
    ch.exchange_declare("ex", "fanout")
    ch.queue_declare("q")
    ch.queue_bind("q", "ex")
    assert channel_error(lambda: ch.exchange_delete("ex", if_unused=True)) == (
        406, f"PRECONDITION_FAILED - exchange 'ex' in vhost '{backend.vhost}' in use")
    ch = channel(backend)
    ch.exchange_delete("ex")
    assert channel_error(lambda: ch.exchange_declare("ex", passive=True))[0] == 404


def test_deleting_a_missing_exchange_or_queue_is_fine(backend: Backend) -> None:
    ch = channel(backend)
    ch.exchange_delete("never-declared")
    assert ch.queue_delete("never-declared").method.message_count == 0


def test_queue_declare_ok_counts_messages_and_consumers(backend: Backend) -> None:
    ch = channel(backend)
    ok = ch.queue_declare("q").method
    assert (ok.queue, ok.message_count, ok.consumer_count) == ("q", 0, 0)
    ch.basic_publish("", "q", b"1")
    ch.basic_publish("", "q", b"2")
    ch.basic_consume("q", lambda *a: None)
    other = connect(backend).channel()
    ok = other.queue_declare("q", passive=True).method
    assert (ok.message_count, ok.consumer_count) == (0, 1)  # both went to the consumer


def test_queue_redeclare_with_another_durability(backend: Backend) -> None:
    ch = channel(backend)
    ch.queue_declare("q", durable=True)
    assert channel_error(lambda: ch.queue_declare("q")) == (
        406, f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '{backend.vhost}': "
             "received 'false' but current is 'true'")


def test_queue_redeclare_without_its_arguments(backend: Backend) -> None:
    ch = channel(backend)
    ch.queue_declare("q", arguments={"x-message-ttl": 60000})
    assert channel_error(lambda: ch.queue_declare("q")) == (
        406, f"PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '{backend.vhost}': "
             "received none but current is the value '60000' of type 'signedint'")


def test_queue_with_the_reserved_prefix(backend: Backend) -> None:
    ch = channel(backend)
    assert channel_error(lambda: ch.queue_declare("amq.q")) == (
        403, "ACCESS_REFUSED - queue name 'amq.q' contains reserved prefix 'amq.*'")


def test_passive_declare_of_a_missing_queue(backend: Backend) -> None:
    ch = channel(backend)
    assert channel_error(lambda: ch.queue_declare("missing", passive=True)) == (
        404, f"NOT_FOUND - no queue 'missing' in vhost '{backend.vhost}'")


def test_server_named_queues(backend: Backend) -> None:
    ch = channel(backend)
    names = {ch.queue_declare("", exclusive=True).method.queue for _ in range(3)}
    assert len(names) == 3
    for name in names:
        assert name.startswith("amq.gen-") and len(name) == 30
    # A server-named queue can be used by name but not redeclared by name (the prefix is reserved).
    name = sorted(names)[0]
    ch.queue_declare(name, passive=True)
    assert channel_error(lambda: ch.queue_declare(name, exclusive=True))[0] == 403


def test_an_invalid_queue_argument(backend: Backend) -> None:
    ch = channel(backend)
    assert channel_error(lambda: ch.queue_declare("q", arguments={"x-max-length": -1})) == (
        406, f"PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'q' in vhost '{backend.vhost}': "
             "{value_negative,-1}")


def test_queue_delete_if_empty_and_if_unused(backend: Backend) -> None:
    ch = channel(backend)
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"x")
    assert channel_error(lambda: ch.queue_delete("q", if_empty=True)) == (
        406, f"PRECONDITION_FAILED - queue 'q' in vhost '{backend.vhost}' not empty")
    ch = channel(backend)
    ch.basic_consume("q", lambda *a: None)
    other = connect(backend).channel()
    assert channel_error(lambda: other.queue_delete("q", if_unused=True)) == (
        406, f"PRECONDITION_FAILED - queue 'q' in vhost '{backend.vhost}' in use")


def test_queue_delete_and_purge_count_the_ready_messages(backend: Backend) -> None:
    ch = channel(backend)
    ch.queue_declare("q")
    for i in range(3):
        ch.basic_publish("", "q", str(i).encode())
    assert ch.queue_purge("q").method.message_count == 3
    ch.basic_publish("", "q", b"again")
    assert ch.queue_delete("q").method.message_count == 1
    assert channel_error(lambda: ch.queue_declare("q", passive=True))[0] == 404


def test_the_empty_queue_name_means_the_last_declared_queue(backend: Backend) -> None:
    ch = channel(backend)
    assert channel_error(lambda: ch.queue_purge("")) == (404, "NOT_FOUND - no previously declared queue")
    ch = channel(backend)
    name = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind("", "amq.direct")  # no key either: the queue's own name is the binding key
    ch.basic_publish("amq.direct", name, b"by shortcut")
    assert ch.queue_purge("").method.message_count == 1
