"""AMQP 0-9-1: publisher confirms, transactions, exclusive and auto-delete queues, direct reply-to, and the
connection-level refusals."""

from __future__ import annotations

import pika
import pytest
from amqpkit import Collector, RawAmqp, channel_error, connect, connection_error, pump
from contractlib import Backend
from pika.exceptions import NackError, UnroutableError


def test_confirms_ack_routed_and_unroutable_publishes(backend: Backend) -> None:
    ch = connect(backend).channel()
    ch.confirm_delivery()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"routed")
    ch.basic_publish("amq.topic", "nobody", b"unroutable, not mandatory")  # acked all the same
    with pytest.raises(UnroutableError):
        ch.basic_publish("amq.topic", "nobody", b"unroutable, mandatory", mandatory=True)
    assert ch.queue_declare("q", passive=True).method.message_count == 1


def test_confirm_tags_count_publishes_from_one(backend: Backend) -> None:
    raw = RawAmqp(backend)
    c = raw.c
    raw.send(1, c.Channel.Open())
    raw.expect(c.Channel.OpenOk)
    raw.send(1, c.Confirm.Select())
    raw.expect(c.Confirm.SelectOk)
    from pamqp import frame
    from pamqp.body import ContentBody
    from pamqp.header import ContentHeader
    for _ in range(3):
        raw.send_raw(frame.marshal(c.Basic.Publish(exchange="amq.topic", routing_key="k"), 1)
                     + frame.marshal(ContentHeader(0, 1, c.Basic.Properties()), 1)
                     + frame.marshal(ContentBody(b"x"), 1))
    # RabbitMQ may confirm several at once (multiple=true); together the acks cover tags 1, 2, 3 in order.
    covered: list[int] = []
    while not covered or covered[-1] < 3:
        ack = raw.expect(c.Basic.Ack)
        first = covered[-1] + 1 if covered else 1
        covered += list(range(first, ack.delivery_tag + 1)) if ack.multiple else [ack.delivery_tag]
    assert covered == [1, 2, 3]


def test_a_queue_that_refuses_a_publish_nacks_it(backend: Backend) -> None:
    ch = connect(backend).channel()
    ch.queue_declare("small", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", "small", b"fits")
    with pytest.raises(NackError):
        ch.basic_publish("", "small", b"refused")


def test_tx_commit_and_rollback(backend: Backend) -> None:
    ch = connect(backend).channel()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"before")
    ch.tx_select()
    method, _, _ = ch.basic_get("q")
    ch.basic_ack(method.delivery_tag)
    ch.basic_publish("", "q", b"in tx")
    other = connect(backend).channel()
    assert other.queue_declare("q", passive=True).method.message_count == 0  # nothing published yet
    ch.tx_rollback()
    ch.basic_publish("", "q", b"committed")
    ch.tx_commit()
    # The rolled-back ack did not happen: "before" is still unacknowledged on ch; "committed" is ready.
    assert other.queue_declare("q", passive=True).method.message_count == 1
    ch.basic_recover(requeue=True)
    got = [other.basic_get("q", auto_ack=True)[2] for _ in range(2)]
    assert got == [b"before", b"committed"]


def test_tx_and_confirm_modes_exclude_each_other(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    ch.tx_select()
    assert channel_error(ch.confirm_delivery) == (406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")
    ch = conn.channel()
    ch.confirm_delivery()
    assert channel_error(ch.tx_select) == (406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")


def test_commit_and_rollback_need_tx_select(backend: Backend) -> None:
    conn = connect(backend)
    assert channel_error(conn.channel().tx_commit) == (406, "PRECONDITION_FAILED - channel is not transactional")
    assert channel_error(conn.channel().tx_rollback) == (406, "PRECONDITION_FAILED - channel is not transactional")


def test_an_exclusive_queue_is_locked_to_its_connection_and_goes_with_it(backend: Backend) -> None:
    owner = connect(backend)
    owner.channel().queue_declare("mine", exclusive=True)
    other = connect(backend).channel()
    locked = (405, f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'mine' in vhost "
                   f"'{backend.vhost}'. It could be originally declared on another connection or the exclusive "
                   "property value does not match that of the original declaration.")
    assert channel_error(lambda: other.queue_declare("mine", passive=True)) == locked
    other = connect(backend).channel()
    assert channel_error(lambda: other.basic_consume("mine", lambda *a: None)) == locked
    owner.close()
    checker = connect(backend).channel()
    pump(checker.connection, lambda: not _exists(backend, "mine"))


def _exists(backend: Backend, queue: str) -> bool:
    return backend.queue(queue) is not None


def test_redeclaring_an_exclusive_queue_as_shared_is_locked(backend: Backend) -> None:
    conn = connect(backend)
    conn.channel().queue_declare("mine", exclusive=True)
    ch = conn.channel()
    assert channel_error(lambda: ch.queue_declare("mine"))[0] == 405


def test_auto_delete_queue_goes_after_its_last_consumer(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    ch.queue_declare("ad", auto_delete=True)
    assert backend.queue("ad") is not None  # never consumed from: it stays
    first = ch.basic_consume("ad", lambda *a: None)
    second = ch.basic_consume("ad", lambda *a: None)
    ch.basic_cancel(first)
    assert backend.queue("ad") is not None
    ch.basic_cancel(second)
    pump(conn, lambda: backend.queue("ad") is None)


def test_auto_delete_queue_goes_when_its_consumers_connection_closes(backend: Backend) -> None:
    conn = connect(backend)
    conn.channel().queue_declare("ad", auto_delete=True)
    conn.channel().basic_consume("ad", lambda *a: None)
    conn.close()
    check = connect(backend)
    pump(check, lambda: backend.queue("ad") is None)


def test_queue_flags_as_an_operator_sees_them(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    ch.queue_declare("durable", durable=True, arguments={"x-max-length": 10})
    ch.queue_declare("excl", exclusive=True)
    ch.queue_declare("ad", auto_delete=True)
    assert backend.queue("durable").flags == (True, False, False)  # type: ignore[union-attr]
    assert backend.queue("durable").arguments == {"x-max-length": 10}  # type: ignore[union-attr]
    assert backend.queue("excl").flags == (False, False, True)  # type: ignore[union-attr]
    assert backend.queue("ad").flags == (False, True, False)  # type: ignore[union-attr]


def test_direct_reply_to(backend: Backend) -> None:
    conn = connect(backend)
    ch = conn.channel()
    ch.queue_declare("rpc")
    replies = Collector(conn)
    ch.basic_consume("amq.rabbitmq.reply-to", replies, auto_ack=True)
    ch.basic_publish("", "rpc", b"ping", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="1"))
    server = connect(backend).channel()
    _, props, body = server.basic_get("rpc", auto_ack=True)
    assert props.reply_to.startswith("amq.rabbitmq.reply-to.") and body == b"ping"
    server.basic_publish("", props.reply_to, b"pong", pika.BasicProperties(correlation_id=props.correlation_id))
    method, reply_props, reply = replies.wait(1)[0]
    assert (reply, reply_props.correlation_id, method.routing_key) == (b"pong", "1", props.reply_to)


def test_reply_to_without_a_reply_consumer(backend: Backend) -> None:
    ch = connect(backend).channel()
    ch.basic_publish("", "x", b"ping", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    assert channel_error(lambda: ch.queue_declare("q")) == (406, "PRECONDITION_FAILED - fast reply consumer does "
                                                                 "not exist")


def test_a_wrong_password(backend: Backend) -> None:
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as err:
        connect(backend, password="wrong")
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker " \
           "logfile." in str(err.value)


def test_an_unknown_vhost(backend: Backend) -> None:
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as err:
        connect(backend, vhost="no-such-vhost")
    assert "(530) 'NOT_ALLOWED - vhost no-such-vhost not found'" in str(err.value)


def test_immediate_is_not_implemented(backend: Backend) -> None:
    raw = RawAmqp(backend)
    c = raw.c
    raw.send(1, c.Channel.Open())
    raw.expect(c.Channel.OpenOk)
    from pamqp import frame
    from pamqp.header import ContentHeader
    raw.send_raw(frame.marshal(c.Basic.Publish(exchange="", routing_key="q", immediate=True), 1)
                 + frame.marshal(ContentHeader(0, 0, c.Basic.Properties()), 1))
    close = raw.expect(c.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        540, "NOT_IMPLEMENTED - immediate=true", 60, 40)


def test_channel_flow_off_is_not_implemented(backend: Backend) -> None:
    ch = connect(backend).channel()
    assert connection_error(lambda: ch.flow(False)) == (540, "NOT_IMPLEMENTED - active=false")


def test_update_secret(backend: Backend) -> None:
    raw = RawAmqp(backend)
    c = raw.c
    raw.send(0, c.Connection.UpdateSecret("guest", "refresh"))
    raw.expect(c.Connection.UpdateSecretOk)


def test_a_reply_to_a_requester_that_went_away(backend: Backend) -> None:
    conn = connect(backend)
    requester = conn.channel()
    requester.queue_declare("rpc")
    requester.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
    requester.basic_publish("", "rpc", b"ask", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    server = connect(backend).channel()
    server.confirm_delivery()
    _, props, _ = server.basic_get("rpc", auto_ack=True)
    requester.close()
    try:
        server.basic_publish("", props.reply_to, b"late", mandatory=True)
        outcome = "accepted"
    except UnroutableError:
        outcome = "returned"
    assert outcome == "returned"


@pytest.mark.parametrize("mechanism", ["AMQPLAIN", "PLAIN"])
def test_py_amqp_logs_in_with_each_mechanism(backend: Backend, mechanism: str) -> None:
    import amqp
    from amqpkit import address

    host, port = address(backend)
    conn = amqp.Connection(f"{host}:{port}", userid="guest", password="guest", virtual_host=backend.vhost,
                           login_method=mechanism)
    conn.connect()
    try:
        ch = conn.channel()
        assert ch.queue_declare("q").queue == "q"
    finally:
        conn.close()
    with pytest.raises(amqp.exceptions.AccessRefused, match="ACCESS_REFUSED - Login was refused using "
                                                            f"authentication mechanism {mechanism}"):
        amqp.Connection(f"{host}:{port}", userid="guest", password="wrong", virtual_host=backend.vhost,
                        login_method=mechanism).connect()
