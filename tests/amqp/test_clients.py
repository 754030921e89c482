"""Real AMQP 0-9-1 clients over real sockets: pika (blocking and asyncio), aio-pika, kombu (py-amqp), rabbitpy."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from typing import Any

import aio_pika
import kombu
import pika
import pika.adapters.asyncio_connection
import pytest
import rabbitpy
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker, UnroutableError

import fakebroker

TIMEOUT = 10


@pytest.fixture
def broker() -> Any:
    with fakebroker.start() as b:
        yield b


@pytest.fixture(autouse=True)
def no_threads_left_behind() -> Any:
    """Client libraries end some of their threads a moment after a close (rabbitpy's channel threads): wait for
    them, so that what they release (sockets) is not released during a later test that counts file
    descriptors."""
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        thread.join(TIMEOUT)
    gc.collect()


def eventually(predicate: Callable[[], bool]) -> None:
    """The client's side of a socket learns of a close a moment later: poll for the effect, bounded."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def blocking(broker: Any) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(broker.amqp_url))


# -- pika, blocking ----------------------------------------------------------------------------------------


def test_pika_declare_bind_publish_consume_ack(broker: Any) -> None:
    conn = blocking(broker)
    ch = conn.channel()
    ch.exchange_declare("sensors", "topic", durable=True)
    ch.queue_declare("readings", durable=True)
    ch.queue_bind("readings", "sensors", "temp.#")
    ch.basic_publish("sensors", "temp.kitchen", b"21.5",
                     pika.BasicProperties(content_type="text/plain", delivery_mode=2, headers={"unit": "C"}))
    ch.basic_publish("sensors", "humidity.kitchen", b"40")
    method, props, body = next(ch.consume("readings", inactivity_timeout=TIMEOUT))
    assert (method.routing_key, body, props.content_type, props.headers) == ("temp.kitchen", b"21.5", "text/plain",
                                                                              {"unit": "C"})
    ch.basic_ack(method.delivery_tag)
    ch.cancel()
    assert broker.queues["readings"].messages == 0
    (logged,) = broker.messages.filter(routing_key="temp.kitchen")
    assert logged.protocol == "amqp" and logged.queues == ("readings",)
    conn.close()


def test_pika_sees_its_connection_in_clients(broker: Any) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url + "?heartbeat=30"))
    conn.channel().basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
    (client,) = broker.clients
    assert client.protocol == "amqp" and client.user == "guest"
    conn.close()


def _rpc(broker: Any, **server_publish: Any) -> tuple[pika.BlockingConnection, list[bytes], Any]:
    """A requester (connection name "requester") consuming direct reply-to, a request in queue "rpc", and a
    server (connection "server") that answers it with ``server_publish``; returns the requester's connection,
    the bodies it got, and the reply-to address."""
    params = pika.URLParameters(broker.amqp_url)
    params.client_properties = {"connection_name": "requester"}
    requester = pika.BlockingConnection(params)
    answers: list[bytes] = []
    ch = requester.channel()
    ch.queue_declare("rpc")
    ch.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, body: answers.append(body), auto_ack=True)
    ch.basic_publish("", "rpc", b"ask", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    server = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    sch = server.channel()
    _, props, _ = sch.basic_get("rpc", auto_ack=True)
    sch.basic_publish("", props.reply_to, b"answer", pika.BasicProperties(correlation_id="c1"), **server_publish)
    server.close()
    return requester, answers, props.reply_to


def test_a_direct_reply_is_in_the_message_log_with_its_delivery(broker: Any) -> None:
    requester, answers, address = _rpc(broker)
    eventually(lambda: requester.process_data_events(time_limit=0) or answers == [b"answer"])
    (reply,) = broker.messages.filter(routing_key=address)
    assert address.startswith("amq.rabbitmq.reply-to.")
    assert (reply.protocol, reply.exchange, reply.body, reply.properties["correlation_id"]) == (
        "amqp", "", b"answer", "c1")
    assert reply.routed and reply.queues == ("amq.rabbitmq.reply-to",)
    (delivery,) = reply.deliveries
    assert delivery == ("amq.rabbitmq.reply-to", "requester") and delivery.outcome == "auto"
    assert list(broker.messages.filter(queue="amq.rabbitmq.reply-to", delivered_to="requester")) == [reply]
    broker.assert_published(routing_key=address, payload=b"answer", delivered_to="requester")
    (request,) = broker.messages.filter(routing_key="rpc")
    assert request.properties["reply_to"] == address  # the address the broker filled in
    requester.close()


def test_a_direct_reply_nobody_consumes_is_logged_unrouted(broker: Any) -> None:
    requester, answers, address = _rpc(broker)
    requester.close()
    eventually(lambda: not broker.clients)
    server = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    server.channel().basic_publish("", address, b"too late")
    server.close()
    (late,) = broker.wait_for_messages(1, payload=b"too late")
    assert (late.routing_key, late.routed, late.deliveries) == (address, False, [])


def test_message_faults_apply_to_direct_replies(broker: Any) -> None:
    broker.delay_next(1, 5.0, payload=b"answer")
    requester, answers, address = _rpc(broker)
    eventually(lambda: bool(broker.messages.filter(routing_key=address)))  # logged, pending: not routed yet
    (reply,) = broker.messages.filter(routing_key=address)
    assert (reply.fault, reply.pending, reply.deliveries) == ("delayed", True, [])
    requester.process_data_events(time_limit=0.1)
    assert answers == []
    broker.clock.advance(5)
    eventually(lambda: requester.process_data_events(time_limit=0) or answers == [b"answer"])
    (reply,) = broker.messages.filter(routing_key=address)
    assert reply.routed and reply.deliveries == [("amq.rabbitmq.reply-to", "requester")]
    requester.close()


def test_pika_channel_error_closes_only_that_channel(broker: Any) -> None:
    conn = blocking(broker)
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.queue_declare("missing", passive=True)
    assert (err.value.reply_code, err.value.reply_text) == (404, "NOT_FOUND - no queue 'missing' in vhost '/'")
    assert conn.is_open
    assert conn.channel().queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")
    conn.close()


def test_pika_connection_error(broker: Any) -> None:
    conn = blocking(broker)
    ch = conn.channel()
    with pytest.raises(ConnectionClosedByBroker) as err:
        ch.exchange_declare("e", "no-such-type")
    assert (err.value.reply_code, err.value.reply_text) == (503, "COMMAND_INVALID - unknown exchange type "
                                                                 "'no-such-type'")


def test_pika_wrong_password(broker: Any) -> None:
    params = pika.ConnectionParameters(*broker.amqp, credentials=pika.PlainCredentials("guest", "wrong"))
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as err:
        pika.BlockingConnection(params)
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" in str(err.value)


def test_pika_confirms_and_mandatory_returns(broker: Any) -> None:
    conn = blocking(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("confirmed")
    ch.basic_publish("", "confirmed", b"ok", mandatory=True)
    with pytest.raises(UnroutableError):
        ch.basic_publish("amq.direct", "nobody", b"lost", mandatory=True)
    assert broker.queues["confirmed"].messages == 1
    conn.close()


def test_pika_qos_and_redelivery_after_the_connection_drops(broker: Any) -> None:
    broker.declare_queue("work")
    for i in range(4):
        broker.publish("", "work", f"job{i}".encode())
    conn = blocking(broker)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2)
    seen = []
    for _method, _, body in ch.consume("work", inactivity_timeout=TIMEOUT):
        seen.append(body)
        if len(seen) == 2:
            break
    assert seen == [b"job0", b"job1"]
    assert broker.queues["work"].messages == 2  # two in flight, not more: the window is 2
    conn.close()  # unacknowledged: back to the head of the queue, redelivered
    conn = blocking(broker)
    method, _, body = conn.channel().basic_get("work")
    assert (body, method.redelivered) == (b"job0", True)
    conn.close()


def test_pika_tx(broker: Any) -> None:
    conn = blocking(broker)
    ch = conn.channel()
    ch.queue_declare("txq")
    ch.tx_select()
    ch.basic_publish("", "txq", b"1")
    ch.tx_rollback()
    ch.basic_publish("", "txq", b"2")
    ch.tx_commit()
    assert [m.body for m in broker.peek("txq")] == [b"2"]
    conn.close()


def test_pika_server_cancel_when_the_queue_is_deleted(broker: Any) -> None:
    conn = blocking(broker)
    ch = conn.channel()
    ch.queue_declare("doomed")
    cancelled = threading.Event()
    ch.add_on_cancel_callback(lambda frame: cancelled.set())
    ch.basic_consume("doomed", lambda *a: None)
    broker.delete_queue("doomed")
    eventually(lambda: conn.process_data_events(time_limit=0) or cancelled.is_set())
    conn.close()


def test_an_open_connection_outlives_the_handshake_timeout(broker: Any) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url + "?heartbeat=0"))
    ch = conn.channel()
    broker.clock.advance(3600)
    ch.queue_declare("still-here")
    assert len(broker.clients) == 1
    conn.close()


def test_an_unfinished_handshake_is_closed_after_the_handshake_timeout(broker: Any) -> None:
    import socket

    with socket.create_connection(tuple(broker.amqp), timeout=TIMEOUT) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        assert sock.recv(65536)  # connection.start
        eventually(lambda: len(broker.clients) == 1)
        broker.clock.advance(10)
        sock.settimeout(TIMEOUT)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data == b""
    eventually(lambda: not broker.clients)


def test_pika_heartbeat_expiry_on_the_broker_clock(broker: Any) -> None:
    """A client that stops reading and writing (here: pika told to send no heartbeats it negotiated) is dropped
    after two heartbeat intervals of silence on the broker's clock."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url + "?heartbeat=10"))
    conn.channel()
    assert len(broker.clients) == 1
    broker.clock.advance(30)  # pika's own heartbeat timer runs on the wall clock: it sent nothing meanwhile
    eventually(lambda: not broker.clients)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        conn.process_data_events(time_limit=1)
        conn.channel()


# -- pika, asyncio adapter ---------------------------------------------------------------------------------


def test_pika_asyncio_adapter(broker: Any) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()

        def on_open(conn: Any) -> None:
            conn.channel(on_open_callback=on_channel)

        def on_channel(ch: Any) -> None:
            ch.queue_declare("aq", callback=lambda _: ch.basic_consume("aq", on_message, auto_ack=True,
                                                                       callback=lambda _: ch.basic_publish(
                                                                           "", "aq", b"async hello")))

        def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
            done.set_result(body)

        conn = pika.adapters.asyncio_connection.AsyncioConnection(
            pika.URLParameters(broker.amqp_url), on_open_callback=on_open, custom_ioloop=loop)
        try:
            return await asyncio.wait_for(done, TIMEOUT)
        finally:
            conn.close()

    assert asyncio.run(main()) == b"async hello"


# -- aio-pika ----------------------------------------------------------------------------------------------


def test_aio_pika_publish_consume_and_rpc_over_direct_reply_to(broker: Any) -> None:
    async def main() -> tuple[bytes, bytes]:
        conn = await aio_pika.connect_robust(broker.amqp_url)
        async with conn:
            ch = await conn.channel()
            exchange = await ch.declare_exchange("events", aio_pika.ExchangeType.FANOUT)
            queue = await ch.declare_queue(exclusive=True)
            await queue.bind(exchange)
            await exchange.publish(aio_pika.Message(b"event", message_id="e1"), routing_key="")
            async with queue.iterator() as it:
                async for message in it:
                    async with message.process():
                        got = message.body
                        assert message.message_id == "e1"
                    break
            # RPC: the server replies to the reply-to address the broker filled in.
            rpc = await ch.declare_queue("rpc")
            reply_queue = await ch.get_queue("amq.rabbitmq.reply-to", ensure=False)
            answers: asyncio.Queue[bytes] = asyncio.Queue()

            async def on_answer(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                answers.put_nowait(message.body)

            await reply_queue.consume(on_answer, no_ack=True)

            async def serve(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    await ch.default_exchange.publish(aio_pika.Message(b"pong:" + message.body),
                                                      routing_key=message.reply_to or "")

            await rpc.consume(serve)
            await ch.default_exchange.publish(aio_pika.Message(b"ping", reply_to="amq.rabbitmq.reply-to"),
                                              routing_key="rpc")
            answer = await asyncio.wait_for(answers.get(), TIMEOUT)
            return got, answer

    assert asyncio.run(main()) == (b"event", b"pong:ping")


# -- kombu (py-amqp) ---------------------------------------------------------------------------------------


def test_kombu_simple_queue_and_producer(broker: Any) -> None:
    with kombu.Connection(broker.amqp_url.replace("amqp://", "pyamqp://")) as conn:
        simple = conn.SimpleQueue("tasks")
        simple.put({"task": "resize", "args": [1, 2]})
        message = simple.get(timeout=TIMEOUT)
        assert message.payload == {"task": "resize", "args": [1, 2]}
        message.ack()
        simple.close()
        exchange = kombu.Exchange("media", type="direct")
        queue = kombu.Queue("videos", exchange, routing_key="video")
        with conn.Producer() as producer:
            producer.publish({"id": 7}, exchange=exchange, routing_key="video", declare=[queue],
                             serializer="json")
        received: list[Any] = []
        with conn.Consumer(queue, callbacks=[lambda body, msg: (received.append(body), msg.ack())]):
            conn.drain_events(timeout=TIMEOUT)
        assert received == [{"id": 7}]
    assert broker.queues["videos"].messages == 0


# -- rabbitpy ----------------------------------------------------------------------------------------------


def test_rabbitpy_declare_bind_publish_get(broker: Any) -> None:
    with rabbitpy.Connection(broker.amqp_url) as conn, conn.channel() as channel:
        queue = rabbitpy.Queue(channel, "mqtt-messages")
        queue.declare()
        queue.bind("amq.topic", "#")
        rabbitpy.Message(channel, "from rabbitpy", {"content_type": "text/plain"}).publish("amq.topic", "a.b")
        message = queue.get()
        assert message is not None
        assert (message.body, message.routing_key, message.properties["content_type"]) == (
            b"from rabbitpy", "a.b", "text/plain")
        message.ack()


# -- Celery (kombu's py-amqp transport) --------------------------------------------------------------------


def test_a_celery_worker_runs_a_task_through_fakebroker(broker: Any) -> None:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    app = Celery("demo", broker=broker.amqp_url.replace("amqp://", "pyamqp://"), backend="rpc://")
    # No AMQP heartbeats: the broker's clock is virtual, and the worker's event loop should notice its stop
    # within its one-second poll rather than at the next heartbeat check.
    app.conf.broker_heartbeat = 0
    app.conf.broker_connection_retry_on_startup = False

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        assert add.delay(2, 3).get(timeout=TIMEOUT) == 5
    (task,) = broker.messages.filter(routing_key="celery")
    assert task.protocol == "amqp" and task.properties["headers"]["task"].endswith("add")


# -- faults ------------------------------------------------------------------------------------------------


def test_an_abrupt_drop_exercises_aio_pikas_reconnect(broker: Any) -> None:
    """broker.disconnect drops the socket with no connection.close: aio-pika's robust connection reconnects,
    redeclares its queue and consumer, and the application keeps receiving."""

    async def main() -> list[bytes]:
        conn = await aio_pika.connect_robust(broker.amqp_url, reconnect_interval=0.05)
        reconnected = asyncio.Event()
        conn.reconnect_callbacks.add(lambda *_: reconnected.set())
        async with conn:
            ch = await conn.channel()
            queue = await ch.declare_queue("robust", durable=True)
            got: asyncio.Queue[bytes] = asyncio.Queue()

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    got.put_nowait(message.body)

            await queue.consume(on_message)
            broker.publish("", "robust", b"before")
            first = await asyncio.wait_for(got.get(), TIMEOUT)
            (client,) = broker.clients
            broker.disconnect(client)
            await asyncio.wait_for(reconnected.wait(), TIMEOUT)
            broker.publish("", "robust", b"after")
            second = await asyncio.wait_for(got.get(), TIMEOUT)
            return [first, second]

    assert asyncio.run(main()) == [b"before", b"after"]


def test_pika_sees_a_dropped_connection(broker: Any) -> None:
    conn = blocking(broker)
    conn.channel()
    (client,) = broker.clients
    broker.disconnect(client)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        for _ in range(100):
            conn.process_data_events(time_limit=0.05)


def test_a_blocked_connection_is_told_when_it_publishes(broker: Any) -> None:
    conn = blocking(broker)
    events: list[str] = []
    conn.add_on_connection_blocked_callback(lambda c, frame: events.append(f"blocked: {frame.method.reason}"))
    conn.add_on_connection_unblocked_callback(lambda c, frame: events.append("unblocked"))
    ch = conn.channel()
    (client,) = broker.clients
    broker.block(client, "low on disk")
    ch.queue_declare("held")  # anything but a publish goes on as usual, and nothing is said
    assert events == [] and broker.clients[0].blocked is False
    ch.basic_publish("", "held", b"waits for the alarm to clear")
    eventually(lambda: conn.process_data_events(time_limit=0) or bool(events))
    assert events == ["blocked: low on disk"] and broker.clients[0].blocked is True
    assert broker.queues["held"].messages == 0
    broker.unblock(client)
    eventually(lambda: conn.process_data_events(time_limit=0) or len(events) == 2)
    assert events == ["blocked: low on disk", "unblocked"]
    eventually(lambda: broker.queues["held"].messages == 1)
    conn.close()


def test_a_node_alarm_blocks_every_publisher_and_new_connections(broker: Any) -> None:
    broker.declare_queue("q")
    consumer = blocking(broker)
    got: list[bytes] = []
    consumer.channel().basic_consume("q", lambda ch, m, p, body: got.append(body), auto_ack=True)
    broker.publish("", "q", b"before")
    broker.block()
    eventually(lambda: consumer.process_data_events(time_limit=0) or got == [b"before"])
    late = blocking(broker)  # opened during the alarm: it is under it too
    told: list[str] = []
    late.add_on_connection_blocked_callback(lambda c, frame: told.append(frame.method.reason))
    late.channel().basic_publish("", "q", b"held")
    eventually(lambda: late.process_data_events(time_limit=0) or bool(told))
    assert told == ["low on memory"]
    consumer.process_data_events(time_limit=0.1)
    assert got == [b"before"]
    broker.unblock()
    eventually(lambda: consumer.process_data_events(time_limit=0) or got == [b"before", b"held"])
    after = blocking(broker)
    after.channel().basic_publish("", "q", b"after")  # the alarm is over for new connections too
    eventually(lambda: consumer.process_data_events(time_limit=0) or len(got) == 3)
    for conn in (consumer, late, after):
        conn.close()


def test_reset_clears_a_node_alarm(broker: Any) -> None:
    broker.block()
    broker.reset()  # as if the node had just started: no alarm
    broker.declare_queue("q")
    conn = blocking(broker)
    told: list[str] = []
    conn.add_on_connection_blocked_callback(lambda c, frame: told.append(frame.method.reason))
    conn.channel().basic_publish("", "q", b"not held")
    eventually(lambda: conn.process_data_events(time_limit=0) or broker.queues["q"].messages == 1)
    assert told == []
    conn.close()


@pytest.mark.parametrize("via", ["client", "broker"])
def test_heartbeats_off_survive_a_long_clock_jump(via: str) -> None:
    options = {"amqp_heartbeat": 0} if via == "broker" else {}
    with fakebroker.start(**options) as broker:
        url = broker.amqp_url + ("?heartbeat=0" if via == "client" else "")
        conn = pika.BlockingConnection(pika.URLParameters(url))
        ch = conn.channel()
        broker.clock.advance(86_400)
        ch.queue_declare("after-a-day")
        assert len(broker.clients) == 1
        conn.close()
