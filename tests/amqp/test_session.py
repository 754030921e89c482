"""The AMQP session without sockets: handshake, channels, every method's reply and error, heartbeats on the
virtual clock, and the runtime contract."""

from __future__ import annotations

from typing import Any

import pytest
from kit.amqp import CAPS, HEADER, Client, content, method, parse, start_ok
from pamqp import commands as c
from pamqp.header import ContentHeader, ProtocolHeader

from fakebroker.protocols.amqp.session import AmqpSession
from fakebroker.protocols.base import ConnectionInfo, Session, SessionHost
from fakebroker.testing import FakeHost, check_session_contract


def amqp(info: ConnectionInfo, host: SessionHost) -> Session:
    return AmqpSession(info, host)


def closed_with(frames: list[tuple[int, Any]], code: int, text: str, ids: tuple[int, int] = (0, 0),
                level: str = "channel") -> None:
    channel, frame = frames[-1]
    kind = c.Channel.Close if level == "channel" else c.Connection.Close
    assert isinstance(frame, kind), frames
    assert (frame.reply_code, frame.reply_text, frame.class_id, frame.method_id) == (code, text, *ids)
    assert (channel == 0) == (level == "connection")


# -- handshake -------------------------------------------------------------------------------------------


def test_start_offers_rabbitmqs_properties_mechanisms_and_tune() -> None:
    client = Client()
    [(channel, start)] = client.send(HEADER)
    assert channel == 0 and isinstance(start, c.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    props = start.server_properties
    assert props["product"] == "RabbitMQ" and props["version"] == "3.10.8"
    assert set(props["capabilities"]) == {
        "publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify",
        "connection.blocked", "consumer_priorities", "authentication_failure_close", "per_consumer_qos",
        "direct_reply_to"}
    assert start.mechanisms == "AMQPLAIN PLAIN" and start.locales == "en_US"
    [(_, tune)] = client.send(start_ok())
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)


def test_tune_follows_the_settings() -> None:
    client = Client(amqp_heartbeat=5, amqp_frame_max=8192, amqp_channel_max=10)
    client.send(HEADER)
    [(_, tune)] = client.send(start_ok())
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (10, 8192, 5)


def test_a_wrong_protocol_header_gets_rabbitmqs_header_and_the_close() -> None:
    client = Client()
    out = client.driver.feed(b"AMQP\x00\x00\x09\x00")
    assert out == HEADER
    assert client.session.close_requested


def test_amqplain_login() -> None:
    client = Client()
    client.send(HEADER)
    table = b"\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x05guest"
    [(_, tune)] = client.send(start_ok(mechanism="AMQPLAIN", response=table.decode()))
    assert isinstance(tune, c.Connection.Tune)
    assert client.session.user == "guest"


def test_a_refused_login_is_closed_with_403_when_the_client_asked_for_it() -> None:
    client = Client()
    client.send(HEADER)
    frames = client.send(start_ok(password="wrong"))
    closed_with(frames, 403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                "For details see the broker logfile.", level="connection")
    assert client.session.close_requested


def test_a_refused_login_without_the_capability_closes_silently() -> None:
    client = Client()
    client.send(HEADER)
    assert client.send(start_ok(password="wrong", capabilities={})) == []
    assert client.session.close_requested


def test_an_unknown_mechanism_closes_silently() -> None:
    client = Client()
    client.send(HEADER)
    assert client.send(start_ok(mechanism="EXTERNAL")) == []
    assert client.session.close_requested


@pytest.mark.parametrize("frame_max,channel_max", [(1000, 2047), (200000, 2047), (0, 2047), (131072, 5000),
                                                   (131072, 0)])
def test_tune_ok_beyond_the_offer_closes_silently(frame_max: int, channel_max: int) -> None:
    client = Client()
    client.send(HEADER)
    client.send(start_ok())
    assert client.send(method(0, c.Connection.TuneOk(channel_max, frame_max, 0))) == []
    assert client.session.close_requested


def test_an_unknown_vhost_is_530() -> None:
    client = Client()
    client.send(HEADER)
    client.send(start_ok())
    client.send(method(0, c.Connection.TuneOk(2047, 131072, 0)))
    frames = client.send(method(0, c.Connection.Open("nope")))
    closed_with(frames, 530, "NOT_ALLOWED - vhost nope not found", (10, 40), level="connection")


def test_a_user_without_access_to_the_vhost_is_530() -> None:
    client = Client(users={"guest": "guest", "iot": {"password": "pw", "vhosts": ["/"]}}, vhosts=("/", "other"))
    client.send(HEADER)
    client.send(start_ok("iot", "pw"))
    client.send(method(0, c.Connection.TuneOk(2047, 131072, 0)))
    frames = client.send(method(0, c.Connection.Open("other")))
    closed_with(frames, 530, "NOT_ALLOWED - access to vhost 'other' refused for user 'iot'", (10, 40),
                level="connection")


def test_established_once_open() -> None:
    client = Client()
    client.send(HEADER)
    client.send(start_ok())
    client.send(method(0, c.Connection.TuneOk(2047, 131072, 0)))
    assert not client.session.established
    client.send(method(0, c.Connection.Open("/")))
    assert client.session.established


def test_update_secret_is_acknowledged() -> None:
    client = Client().open()
    assert isinstance(client.call(0, c.Connection.UpdateSecret("new-token", "refresh")), c.Connection.UpdateSecretOk)


def test_close_from_the_client() -> None:
    client = Client().open()
    [(_, ok)] = client.send(method(0, c.Connection.Close(200, "bye", 0, 0)))
    assert isinstance(ok, c.Connection.CloseOk)
    assert client.session.close_requested


# -- heartbeats ------------------------------------------------------------------------------------------


def test_heartbeats_are_sent_on_the_clock_and_silence_closes_the_socket() -> None:
    # rabbit_heartbeat: the sender looks every half interval and sends when nothing else went out; the receiver
    # looks every interval and gives up on the second idle look in a row.
    client = Client()
    client.open(heartbeat=10)
    client.driver.drain()
    client.host.clock.advance(5)
    assert client.driver.drain() == b""  # connection.open-ok went out in this half interval
    client.host.clock.advance(5)
    assert client.driver.drain() == b"\x08\x00\x00\x00\x00\x00\x00\xce"
    client.host.clock.advance(19)
    assert not client.driver.aborted
    client.host.clock.advance(1)
    assert client.driver.aborted
    assert client.session.close_reason == "missed heartbeats from client, timeout: 10s"


def test_client_traffic_keeps_the_connection() -> None:
    client = Client().open(heartbeat=10)
    for _ in range(10):
        client.host.clock.advance(9)
        client.send(b"\x08\x00\x00\x00\x00\x00\x00\xce")
    assert not client.driver.aborted


def test_a_blocked_connection_is_not_dropped_for_silence() -> None:
    # rabbit_reader pauses the heartbeat monitor of a connection it no longer reads (observed on 3.10: a silent
    # blocked connection with heartbeat 1 s stays, a silent one under the alarm that did not publish goes).
    client = Client().open(heartbeat=10)
    session = client.session
    assert isinstance(session, AmqpSession)
    session.block("low on memory")
    client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), b"held"))
    client.host.clock.advance(600)
    assert not client.driver.aborted
    session.unblock()
    client.host.clock.advance(30)
    assert client.driver.aborted


def test_no_heartbeat_when_the_client_tunes_it_off() -> None:
    client = Client().open(heartbeat=0)
    client.driver.drain()
    client.host.clock.advance(3600)
    assert client.driver.drain() == b"" and not client.driver.aborted


# -- channels ----------------------------------------------------------------------------------------------


def test_a_method_on_an_unopened_channel_is_504() -> None:
    client = Client().open(channels=())
    frames = client.send(method(5, c.Queue.Declare(queue="q")))
    closed_with(frames, 504, "CHANNEL_ERROR - expected 'channel.open'", (50, 10), level="connection")


def test_a_second_channel_open_is_504() -> None:
    client = Client().open()
    frames = client.send(method(1, c.Channel.Open()))
    closed_with(frames, 504, "CHANNEL_ERROR - second 'channel.open' seen", (20, 10), level="connection")


def test_channel_max_counts_open_channels() -> None:
    client = Client().open(channel_max=3, channels=(1, 2, 3000))
    frames = client.send(method(4, c.Channel.Open()))
    closed_with(frames, 530, "NOT_ALLOWED - number of channels opened (3) has reached the negotiated "
                "channel_max (3)", level="connection")


def test_a_content_header_without_a_method_is_505() -> None:
    client = Client().open()
    frames = client.send(b"\x02\x00\x01\x00\x00\x00\x0e" + b"\x00\x3c\x00\x00" + b"\x00" * 8 + b"\x00\x00\xce")
    closed_with(frames, 505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
                level="connection")


def test_a_method_where_the_content_header_belongs_is_505() -> None:
    client = Client().open()
    frames = client.send(method(1, c.Basic.Publish(exchange="", routing_key="q")), method(1, c.Basic.Qos(0, 1)))
    closed_with(frames, 505, "UNEXPECTED_FRAME - expected content header for class 60, got non content header "
                "frame instead", (60, 40), level="connection")


def test_a_method_where_the_body_belongs_is_505() -> None:
    client = Client().open()
    frames = client.send(method(1, c.Basic.Publish(exchange="", routing_key="q")),
                         b"\x02\x00\x01\x00\x00\x00\x0e\x00\x3c\x00\x00" + (3).to_bytes(8, "big")
                         + b"\x00\x00\xce", method(1, c.Basic.Qos(0, 1)))
    closed_with(frames, 505, "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
                (60, 40), level="connection")


def test_a_content_header_of_another_class_is_505() -> None:
    client = Client().open()
    frames = client.send(method(1, c.Basic.Publish(exchange="", routing_key="q")),
                         b"\x02\x00\x01\x00\x00\x00\x0e\x00\x32\x00\x00" + (3).to_bytes(8, "big") + b"\x00\x00\xce")
    closed_with(frames, 505, "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 "
                "instead", (60, 40), level="connection")


def test_a_heartbeat_on_a_channel_is_505() -> None:
    client = Client().open()
    frames = client.send(b"\x08\x00\x01\x00\x00\x00\x00\xce")
    closed_with(frames, 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", level="connection")


def test_a_channel_method_on_channel_zero_is_504() -> None:
    client = Client().open()
    frames = client.send(method(0, c.Queue.Declare(queue="q")))
    closed_with(frames, 504, "CHANNEL_ERROR - unexpected method in connection state running", (50, 10),
                level="connection")


def test_a_connection_method_on_a_channel_is_503() -> None:
    client = Client().open()
    frames = client.send(method(1, c.Connection.Open("/")))
    closed_with(frames, 503, "COMMAND_INVALID - unimplemented method", (10, 40), level="connection")


def test_after_connection_close_only_close_ok_counts() -> None:
    client = Client().open()
    client.send(method(1, c.Channel.Open()))
    assert client.send(method(1, c.Queue.Declare(queue="q"))) == []
    client.send(method(0, c.Connection.CloseOk()))
    assert client.session.close_requested


def test_a_closing_channel_ignores_everything_but_close_ok() -> None:
    client = Client().open()
    closed_with(client.send(method(1, c.Queue.Declare(queue="missing", passive=True))), 404,
                "NOT_FOUND - no queue 'missing' in vhost '/'", (50, 10))
    assert client.send(method(1, c.Queue.Declare(queue="q"))) == []
    assert client.send(method(1, c.Channel.CloseOk())) == []
    assert isinstance(client.call(1, c.Channel.Open()), c.Channel.OpenOk)


def test_channel_flow() -> None:
    client = Client().open()
    assert client.call(1, c.Channel.Flow(True)).active is True
    closed_with(client.send(method(1, c.Channel.Flow(False))), 540, "NOT_IMPLEMENTED - active=false", (20, 20),
                level="connection")


# -- exchanges, queues, bindings ---------------------------------------------------------------------------


def test_declare_bind_publish_get() -> None:
    client = Client().open()
    assert isinstance(client.call(1, c.Exchange.Declare(exchange="ex", exchange_type="topic")), c.Exchange.DeclareOk)
    ok = client.call(1, c.Queue.Declare(queue="q"))
    assert (ok.queue, ok.message_count, ok.consumer_count) == ("q", 0, 0)
    assert isinstance(client.call(1, c.Queue.Bind(queue="q", exchange="ex", routing_key="a.*")), c.Queue.BindOk)
    assert client.send(content(1, c.Basic.Publish(exchange="ex", routing_key="a.b"), b"hi",
                               content_type="text/plain")) == []
    assert client.call(1, c.Queue.Declare(queue="q", passive=True)).message_count == 1
    get_ok, header, body = client.send(method(1, c.Basic.Get(queue="q", no_ack=True)))
    assert isinstance(get_ok[1], c.Basic.GetOk) and get_ok[1].routing_key == "a.b" and get_ok[1].message_count == 0
    assert isinstance(header[1], ContentHeader) and header[1].properties.content_type == "text/plain"
    assert body[1].value == b"hi"
    assert isinstance(client.call(1, c.Basic.Get(queue="q")), c.Basic.GetEmpty)


def test_server_named_queue_and_the_empty_name_shortcuts() -> None:
    client = Client().open()
    name = client.call(1, c.Queue.Declare(queue="", exclusive=True)).queue
    assert name.startswith("amq.gen-") and len(name) == len("amq.gen-") + 22
    client.call(1, c.Queue.Bind(queue="", exchange="amq.direct", routing_key=""))
    client.send(content(1, c.Basic.Publish(exchange="amq.direct", routing_key=name), b"x"))
    assert client.call(1, c.Queue.Purge(queue="")).message_count == 1


def test_the_empty_name_without_a_declared_queue_is_404() -> None:
    client = Client().open()
    closed_with(client.send(method(1, c.Queue.Purge(queue=""))), 404, "NOT_FOUND - no previously declared queue",
                (50, 30))


def test_a_publish_to_a_missing_exchange_closes_the_channel_with_404() -> None:
    client = Client().open()
    frames = client.send(content(1, c.Basic.Publish(exchange="missing", routing_key="k"), b"x"))
    closed_with(frames, 404, "NOT_FOUND - no exchange 'missing' in vhost '/'", (60, 40))


def test_an_unknown_exchange_type_closes_the_connection_with_503() -> None:
    client = Client().open()
    frames = client.send(method(1, c.Exchange.Declare(exchange="e", exchange_type="nope")))
    closed_with(frames, 503, "COMMAND_INVALID - unknown exchange type 'nope'", (40, 10), level="connection")


def test_exchange_to_exchange_binding_and_unbinding() -> None:
    client = Client().open()
    client.call(1, c.Exchange.Declare(exchange="src", exchange_type="topic"))
    client.call(1, c.Exchange.Declare(exchange="dst", exchange_type="fanout"))
    client.call(1, c.Queue.Declare(queue="q"))
    client.call(1, c.Queue.Bind(queue="q", exchange="dst"))
    assert isinstance(client.call(1, c.Exchange.Bind(destination="dst", source="src", routing_key="a.#")),
                      c.Exchange.BindOk)
    client.send(content(1, c.Basic.Publish(exchange="src", routing_key="a.b"), b"1"))
    assert isinstance(client.call(1, c.Exchange.Unbind(destination="dst", source="src", routing_key="a.#")),
                      c.Exchange.UnbindOk)
    client.send(content(1, c.Basic.Publish(exchange="src", routing_key="a.b"), b"2"))
    assert client.call(1, c.Queue.Purge(queue="q")).message_count == 1


def test_mandatory_unroutable_comes_back_with_312() -> None:
    client = Client().open()
    frames = client.send(content(1, c.Basic.Publish(exchange="amq.topic", routing_key="nobody", mandatory=True),
                                 b"lost", message_id="m1"))
    ret, header, body = frames
    assert isinstance(ret[1], c.Basic.Return)
    assert (ret[1].reply_code, ret[1].reply_text, ret[1].exchange, ret[1].routing_key) == (
        312, "NO_ROUTE", "amq.topic", "nobody")
    assert header[1].properties.message_id == "m1" and body[1].value == b"lost"


def test_immediate_is_not_implemented() -> None:
    client = Client().open()
    frames = client.send(content(1, c.Basic.Publish(exchange="", routing_key="q", immediate=True), b"x"))
    closed_with(frames, 540, "NOT_IMPLEMENTED - immediate=true", (60, 40), level="connection")


def test_a_message_over_max_message_size_closes_the_channel() -> None:
    client = Client(amqp_max_message_size=10).open()
    frames = client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), b"x" * 11))
    closed_with(frames, 406, "PRECONDITION_FAILED - message size 11 is larger than configured max size 10",
                (60, 40))


def test_user_id_must_be_the_authenticated_user() -> None:
    client = Client().open()
    frames = client.send(content(1, c.Basic.Publish(exchange="amq.direct", routing_key="q"), b"x", user_id="bob"))
    closed_with(frames, 406, "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was "
                "'guest'", (60, 40))


# -- consuming and acknowledging ---------------------------------------------------------------------------


def test_consume_ok_comes_before_the_deliveries() -> None:
    client = Client().open()
    client.call(1, c.Queue.Declare(queue="q"))
    for body in (b"a", b"b"):
        client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), body))
    frames = client.send(method(1, c.Basic.Consume(queue="q", consumer_tag="t1")))
    assert isinstance(frames[0][1], c.Basic.ConsumeOk) and frames[0][1].consumer_tag == "t1"
    delivers = [f for _, f in frames if isinstance(f, c.Basic.Deliver)]
    assert [(d.consumer_tag, d.delivery_tag, d.redelivered) for d in delivers] == [("t1", 1, False), ("t1", 2, False)]


def test_a_server_generated_consumer_tag() -> None:
    client = Client().open()
    client.call(1, c.Queue.Declare(queue="q"))
    tag = client.call(1, c.Basic.Consume(queue="q")).consumer_tag
    assert tag.startswith("amq.ctag-") and len(tag) == len("amq.ctag-") + 22


def test_reusing_a_consumer_tag_is_530() -> None:
    client = Client().open()
    client.call(1, c.Queue.Declare(queue="q"))
    client.call(1, c.Basic.Consume(queue="q", consumer_tag="t"))
    frames = client.send(method(1, c.Basic.Consume(queue="q", consumer_tag="t")))
    closed_with(frames, 530, "NOT_ALLOWED - attempt to reuse consumer tag 't'", (60, 20), level="connection")


def test_exclusive_consumer() -> None:
    client = Client().open(channels=(1, 2))
    client.call(1, c.Queue.Declare(queue="q"))
    client.call(1, c.Basic.Consume(queue="q", consumer_tag="a", exclusive=True))
    closed_with(client.send(method(2, c.Basic.Consume(queue="q", consumer_tag="b"))), 403,
                "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use", (60, 20))


def test_nack_and_reject_requeue_in_original_order() -> None:
    client = Client().open()
    client.call(1, c.Queue.Declare(queue="q"))
    for body in (b"1", b"2", b"3"):
        client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), body))
    for _ in range(3):
        client.send(method(1, c.Basic.Get(queue="q")))
    client.send(method(1, c.Basic.Reject(2, requeue=True)))
    client.send(method(1, c.Basic.Nack(3, multiple=True, requeue=True)))
    frames = client.send(method(1, c.Basic.Consume(queue="q", consumer_tag="t", no_ack=True)))
    bodies = [f.value for _, f in frames if hasattr(f, "value") and isinstance(f.value, bytes)]
    assert bodies == [b"1", b"2", b"3"]
    assert all(f.redelivered for _, f in frames if isinstance(f, c.Basic.Deliver))


def test_an_unknown_delivery_tag_closes_the_channel_with_406() -> None:
    client = Client().open()
    closed_with(client.send(method(1, c.Basic.Ack(999))), 406, "PRECONDITION_FAILED - unknown delivery tag 999",
                (60, 80))


def test_qos_per_consumer_limits_deliveries_until_acked() -> None:
    client = Client().open()
    client.call(1, c.Queue.Declare(queue="q"))
    for i in range(5):
        client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), str(i).encode()))
    assert isinstance(client.call(1, c.Basic.Qos(prefetch_count=2)), c.Basic.QosOk)
    frames = client.send(method(1, c.Basic.Consume(queue="q", consumer_tag="t")))
    assert [f.delivery_tag for _, f in frames if isinstance(f, c.Basic.Deliver)] == [1, 2]
    frames = client.send(method(1, c.Basic.Ack(2, multiple=True)))
    assert [f.delivery_tag for _, f in frames if isinstance(f, c.Basic.Deliver)] == [3, 4]


def test_global_qos_is_shared_by_the_channels_consumers() -> None:
    client = Client().open()
    for q in ("q1", "q2"):
        client.call(1, c.Queue.Declare(queue=q))
        for i in range(3):
            client.send(content(1, c.Basic.Publish(exchange="", routing_key=q), str(i).encode()))
    client.call(1, c.Basic.Qos(prefetch_count=3, global_=True))
    first = client.send(method(1, c.Basic.Consume(queue="q1", consumer_tag="a")))
    second = client.send(method(1, c.Basic.Consume(queue="q2", consumer_tag="b")))
    assert len([f for _, f in first + second if isinstance(f, c.Basic.Deliver)]) == 3
    more = client.send(method(1, c.Basic.Ack(1)))
    assert [f.consumer_tag for _, f in more if isinstance(f, c.Basic.Deliver)] == ["b"]


def test_prefetch_size_is_not_implemented() -> None:
    client = Client().open()
    closed_with(client.send(method(1, c.Basic.Qos(prefetch_size=10))), 540, "NOT_IMPLEMENTED - prefetch_size!=0 (10)",
                (60, 10), level="connection")


def test_recover_requeues_and_recover_without_requeue_is_not_implemented() -> None:
    client = Client().open()
    client.call(1, c.Queue.Declare(queue="q"))
    client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), b"x"))
    client.send(method(1, c.Basic.Get(queue="q")))
    assert isinstance(client.call(1, c.Basic.Recover(requeue=True)), c.Basic.RecoverOk)
    assert client.call(1, c.Queue.Declare(queue="q", passive=True)).message_count == 1
    closed_with(client.send(method(1, c.Basic.Recover(requeue=False))), 540, "NOT_IMPLEMENTED - requeue=false",
                (60, 110), level="connection")


def test_deleting_a_queue_cancels_its_consumers_for_clients_that_asked() -> None:
    host = FakeHost()
    client = Client(host).open()
    client.call(1, c.Queue.Declare(queue="q"))
    client.call(1, c.Basic.Consume(queue="q", consumer_tag="t"))
    host.model.vhost("/").delete_queue("q")
    [(channel, cancel)] = parse(client.driver.drain())
    assert channel == 1 and isinstance(cancel, c.Basic.Cancel) and cancel.consumer_tag == "t" and cancel.nowait


def test_closing_the_channel_requeues_its_unacked_messages() -> None:
    client = Client().open(channels=(1, 2))
    client.call(2, c.Queue.Declare(queue="q"))
    client.send(content(2, c.Basic.Publish(exchange="", routing_key="q"), b"x"))
    client.send(method(1, c.Basic.Get(queue="q")))
    assert isinstance(client.call(1, c.Channel.Close(200, "", 0, 0)), c.Channel.CloseOk)
    assert client.call(2, c.Queue.Declare(queue="q", passive=True)).message_count == 1


# -- exclusive and auto-delete queues ------------------------------------------------------------------------


def test_exclusive_queues_belong_to_their_connection_and_go_with_it() -> None:
    host = FakeHost()
    owner = Client(host).open()
    other = Client(host).open()
    owner.call(1, c.Queue.Declare(queue="mine", exclusive=True))
    closed_with(other.send(method(1, c.Queue.Declare(queue="mine", passive=True))), 405,
                "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'mine' in vhost '/'. It could be "
                "originally declared on another connection or the exclusive property value does not match that of "
                "the original declaration.", (50, 10))
    owner.session.receive_data(b"")
    assert "mine" not in host.model.vhost("/").queues


def test_describe_lists_consumers_and_keeps_them_after_the_close() -> None:
    client = Client().open()
    client.call(1, c.Queue.Declare(queue="q"))
    client.call(1, c.Basic.Consume(queue="q", consumer_tag="t"))
    client.call(1, c.Basic.Consume(queue="amq.rabbitmq.reply-to", consumer_tag="r", no_ack=True))
    described = client.session.describe()
    assert described["subscriptions"] == {"t": "q", "r": "amq.rabbitmq.reply-to"}
    assert (described["vhost"], described["channels"], described["auth_mechanism"]) == ("/", 1, "PLAIN")
    client.session.receive_data(b"")
    assert client.session.describe()["subscriptions"] == {"t": "q", "r": "amq.rabbitmq.reply-to"}


def test_an_auto_delete_queue_goes_when_its_last_consumer_cancels() -> None:
    host = FakeHost()
    client = Client(host).open()
    client.call(1, c.Queue.Declare(queue="ad", auto_delete=True))
    client.call(1, c.Basic.Consume(queue="ad", consumer_tag="t"))
    assert isinstance(client.call(1, c.Basic.Cancel(consumer_tag="t")), c.Basic.CancelOk)
    assert "ad" not in host.model.vhost("/").queues


# -- confirms and transactions -----------------------------------------------------------------------------


def test_confirms_ack_each_publish_in_order_and_nack_a_refused_one() -> None:
    client = Client().open()
    client.call(1, c.Queue.Declare(queue="full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"}))
    assert isinstance(client.call(1, c.Confirm.Select()), c.Confirm.SelectOk)
    acks = []
    for _ in range(2):
        acks += client.send(content(1, c.Basic.Publish(exchange="", routing_key="full"), b"x"))
    acks += client.send(content(1, c.Basic.Publish(exchange="", routing_key="nowhere"), b"x"))
    assert [(type(f).__name__, f.delivery_tag) for _, f in acks] == [("Ack", 1), ("Nack", 2), ("Ack", 3)]


def test_mandatory_return_comes_before_the_confirm() -> None:
    client = Client().open()
    client.call(1, c.Confirm.Select())
    frames = client.send(content(1, c.Basic.Publish(exchange="", routing_key="nobody", mandatory=True), b"x"))
    assert [type(f).__name__ for _, f in frames] == ["Return", "ContentHeader", "ContentBody", "Ack"]


def test_tx_and_confirm_do_not_mix() -> None:
    client = Client().open(channels=(1, 2))
    client.call(1, c.Tx.Select())
    closed_with(client.send(method(1, c.Confirm.Select())), 406,
                "PRECONDITION_FAILED - cannot switch from tx to confirm mode", (85, 10))
    client.call(2, c.Confirm.Select())
    closed_with(client.send(method(2, c.Tx.Select())), 406,
                "PRECONDITION_FAILED - cannot switch from confirm to tx mode", (90, 10))


def test_commit_without_select_is_406() -> None:
    client = Client().open()
    closed_with(client.send(method(1, c.Tx.Commit())), 406, "PRECONDITION_FAILED - channel is not transactional",
                (90, 20))


def test_tx_publishes_and_acks_wait_for_commit_and_rollback_drops_them() -> None:
    client = Client().open(channels=(1, 2))
    client.call(2, c.Queue.Declare(queue="q"))
    client.send(content(2, c.Basic.Publish(exchange="", routing_key="q"), b"old"))
    client.call(1, c.Tx.Select())
    client.send(method(1, c.Basic.Get(queue="q")))
    client.send(method(1, c.Basic.Ack(1)))
    client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), b"new"))
    assert client.call(2, c.Queue.Declare(queue="q", passive=True)).message_count == 0
    assert isinstance(client.call(1, c.Tx.Rollback()), c.Tx.RollbackOk)
    # The rolled-back ack leaves the message unacknowledged; ack it for real, and commit a publish.
    client.send(method(1, c.Basic.Ack(1)))
    client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), b"new"))
    assert isinstance(client.call(1, c.Tx.Commit()), c.Tx.CommitOk)
    assert client.call(2, c.Queue.Declare(queue="q", passive=True)).message_count == 1


# -- direct reply-to and blocking ---------------------------------------------------------------------------


def test_direct_reply_to() -> None:
    host = FakeHost()
    requester = Client(host).open()
    server = Client(host).open()
    server.call(1, c.Queue.Declare(queue="rpc"))
    requester.call(1, c.Basic.Consume(queue="amq.rabbitmq.reply-to", consumer_tag="r", no_ack=True))
    requester.send(content(1, c.Basic.Publish(exchange="", routing_key="rpc"), b"ask",
                           reply_to="amq.rabbitmq.reply-to"))
    _, header, _ = server.send(method(1, c.Basic.Get(queue="rpc", no_ack=True)))
    address = header[1].properties.reply_to
    assert address.startswith("amq.rabbitmq.reply-to.")
    server.send(content(1, c.Basic.Publish(exchange="", routing_key=address), b"answer"))
    frames = parse(requester.driver.drain())
    assert isinstance(frames[0][1], c.Basic.Deliver) and frames[0][1].consumer_tag == "r"
    assert frames[2][1].value == b"answer"


def test_a_reply_to_a_closed_channel_goes_nowhere() -> None:
    host = FakeHost()
    requester = Client(host).open()
    server = Client(host).open()
    requester.call(1, c.Basic.Consume(queue="amq.rabbitmq.reply-to", consumer_tag="r", no_ack=True))
    requester.call(1, c.Queue.Declare(queue="rpc"))
    requester.send(content(1, c.Basic.Publish(exchange="", routing_key="rpc"), b"ask",
                           reply_to="amq.rabbitmq.reply-to"))
    _, header, _ = server.send(method(1, c.Basic.Get(queue="rpc", no_ack=True)))
    assert isinstance(requester.call(1, c.Channel.Close(200, "", 0, 0)), c.Channel.CloseOk)
    frames = server.send(content(1, c.Basic.Publish(exchange="", routing_key=header[1].properties.reply_to,
                                                    mandatory=True), b"late"))
    assert isinstance(frames[0][1], c.Basic.Return)  # nobody consumes that address any more
    assert requester.driver.drain() == b""


def test_reply_to_without_the_reply_consumer_is_406() -> None:
    client = Client().open()
    frames = client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), b"x",
                                 reply_to="amq.rabbitmq.reply-to"))
    closed_with(frames, 406, "PRECONDITION_FAILED - fast reply consumer does not exist", (60, 40))


def test_a_blocked_connection_is_not_read_after_its_first_publish() -> None:
    host = FakeHost()
    client = Client(host).open()
    client.call(1, c.Queue.Declare(queue="q"))
    session = client.session
    assert isinstance(session, AmqpSession)
    session.block("low on memory")
    assert client.driver.drain() == b""  # RabbitMQ 3.10 says nothing when the alarm goes off
    # Other methods still work until a publish arrives; then the client is told, and nothing more is read,
    # that publish included.
    assert isinstance(client.call(1, c.Queue.Declare(queue="q", passive=True)), c.Queue.DeclareOk)
    assert session.connection_state == "blocking"
    frames = client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), b"held"),
                         method(1, c.Queue.Declare(queue="q", passive=True)))
    assert [(ch, type(m)) for ch, m in frames] == [(0, c.Connection.Blocked)]
    assert frames[0][1].reason == "low on memory"
    assert session.connection_state == "blocked" and session.describe()["blocked"] is True
    assert host.model.vhost("/").queues["q"].message_count == 0
    session.unblock()
    frames = parse(client.driver.drain())
    assert isinstance(frames[0][1], c.Connection.Unblocked)
    assert frames[1][1].message_count == 1  # the held publish went first, then the declare
    assert session.connection_state == "running"


def test_an_alarm_that_clears_before_a_publish_is_never_told() -> None:
    client = Client().open()
    session = client.session
    assert isinstance(session, AmqpSession)
    session.block("low on memory")
    session.unblock()
    assert client.driver.drain() == b""
    assert client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), b"x")) == []


def test_a_client_without_the_capability_is_only_paused() -> None:
    host = FakeHost()
    client = Client(host).open(capabilities={})
    client.call(1, c.Queue.Declare(queue="q"))
    session = client.session
    assert isinstance(session, AmqpSession)
    session.block("low on memory")
    assert client.send(content(1, c.Basic.Publish(exchange="", routing_key="q"), b"held")) == []
    session.unblock()
    assert client.driver.drain() == b""  # no connection.unblocked either
    assert host.model.vhost("/").queues["q"].message_count == 1


# -- the runtime contract ----------------------------------------------------------------------------------

OPEN = [HEADER, start_ok(), method(0, c.Connection.TuneOk(2047, 131072, 60)), method(0, c.Connection.Open("/")),
        method(1, c.Channel.Open())]
WORK = [method(1, c.Queue.Declare(queue="q")), content(1, c.Basic.Publish(exchange="", routing_key="q"), b"hello"),
        method(1, c.Basic.Consume(queue="q", consumer_tag="t")), method(1, c.Basic.Ack(1)),
        method(1, c.Basic.Get(queue="q"))]
SCRIPTS = {
    "session": OPEN + WORK,
    "client close": [*OPEN, *WORK, method(0, c.Connection.Close(200, "", 0, 0))],
    "channel error": [*OPEN, method(1, c.Queue.Declare(queue="nope", passive=True)), method(1, c.Channel.CloseOk())],
    "connection error": [*OPEN, method(1, c.Channel.Open())],
    "frame error": [*OPEN, method(1, c.Channel.Close(200, "", 0, 0))[:-1] + b"\x00"],
    "refused login": [HEADER, start_ok(password="bad")],
    "wrong header": [b"AMQP\x01\x01\x00\x09"],
}


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_the_session_keeps_the_runtime_contract(script: list[bytes]) -> None:
    check_session_contract(amqp, script)


def test_protocol_header_parses_back() -> None:
    assert isinstance(parse(HEADER)[0][1], ProtocolHeader)
    assert CAPS["consumer_cancel_notify"]


def test_content_headers_pass_through_verbatim() -> None:
    """RabbitMQ hands consumers the content header's properties exactly as published (field types included);
    so does fakebroker, whatever its codec would choose when encoding afresh."""
    client = Client().open()
    client.call(1, c.Queue.Declare(queue="q"))
    # A header table with a 32-bit int 'I' for 1 (pamqp would pick the short-short 'b') and a long string.
    table = b"\x01nI\x00\x00\x00\x01\x01sS\x00\x00\x00\x02ab"
    props = b"\x20\x00" + len(table).to_bytes(4, "big") + table  # flags: headers only
    header = b"\x00\x3c\x00\x00" + (2).to_bytes(8, "big") + props
    client.send(method(1, c.Basic.Publish(exchange="", routing_key="q")),
                b"\x02\x00\x01" + len(header).to_bytes(4, "big") + header + b"\xce",
                b"\x03\x00\x01\x00\x00\x00\x02hi\xce")
    out = client.driver.feed(method(1, c.Basic.Get(queue="q", no_ack=True)))
    assert header in out
    assert client.host.model.log[0].properties == {"headers": {"n": 1, "s": "ab"}}
