"""A subscriber that never reads cannot make the broker buffer without limit: QoS 0 deliveries past
``output_buffer_limit`` are dropped and counted, QoS 1 deliveries stop at the prefetch window and wait in the
queue. And the packet-size limits of current RabbitMQ: 64 KiB before CONNECT, 16 MiB after."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from wire import Closed, Connect, Puback, Publish, RawMqtt, Suback, Subscribe, encode

from fakebroker import ThreadedBroker
from fakebroker.config import Options

LIMIT = 1024 * 1024
BODY = b"f" * 65_000


def publish_all(pub: RawMqtt, count: int, qos: int = 0) -> None:
    """``count`` messages to flood/<n>; the last at QoS 1 so that its PUBACK says all were handled."""
    for n in range(count - 1):
        pub.send(Publish(f"flood/{n}", BODY, qos, packet_id=n % 0xFFFE + 1 if qos else None))
        if qos:
            assert pub.recv(timeout=10) == Puback(n % 0xFFFE + 1)
    pub.send(Publish("flood/last", BODY, 1, packet_id=0xFFFF))
    assert pub.recv(timeout=30) == Puback(0xFFFF)


@pytest.mark.fakebroker(output_buffer_limit=LIMIT)
def test_qos0_to_a_subscriber_that_does_not_read_is_dropped_past_the_limit(broker: ThreadedBroker, bystander):
    sub = RawMqtt(tuple(broker.mqtt), rcvbuf=4096)  # type: ignore[arg-type]
    sub.connect("slow", keepalive=0)
    sub.subscribe("flood/#", 0)
    pub = RawMqtt(tuple(broker.mqtt))  # type: ignore[arg-type]
    pub.connect("flooder")
    count = 600  # 39 MB, against a 1 MiB limit and the kernel's socket buffers
    publish_all(pub, count)
    info = broker.clients.get("slow")
    assert info is not None
    assert info.dropped > 0
    assert info.output_buffered < LIMIT + len(BODY) + 100  # grew to the whole flood before
    bystander.check()
    assert "dropped=" in broker.traffic_report()
    # Nothing is lost silently: what arrives and what was counted as dropped add up to what was sent.
    received = 0
    deadline = time.monotonic() + 30
    while received < count - info.dropped:
        assert time.monotonic() < deadline, (received, info.dropped)
        packet = sub.recv(timeout=10)
        assert isinstance(packet, Publish) and packet.payload == BODY
        received += 1
    with pytest.raises(AssertionError, match="no packet"):
        sub.recv(timeout=0.2)
    assert broker.clients.get("slow").dropped == info.dropped  # type: ignore[union-attr]
    sub.close()
    pub.close()


@pytest.mark.fakebroker(output_buffer_limit=LIMIT)
def test_qos1_to_a_subscriber_that_does_not_read_waits_in_its_queue(broker: ThreadedBroker, bystander):
    sub = RawMqtt(tuple(broker.mqtt), rcvbuf=4096)  # type: ignore[arg-type]
    sub.connect("slow1", keepalive=0)
    sub.subscribe("flood/#", 1)
    pub = RawMqtt(tuple(broker.mqtt))  # type: ignore[arg-type]
    pub.connect("flooder1")
    count = 200
    publish_all(pub, count, qos=1)
    info = broker.clients.get("slow1")
    assert info is not None and info.inflight == 10 and info.dropped == 0  # the prefetch window
    assert broker.queues["mqtt-subscription-slow1qos1"].message_count == count - 10
    bystander.check()
    got = 0
    while got < count:
        packet = sub.recv(timeout=10)
        assert isinstance(packet, Publish) and packet.qos == 1
        sub.send(Puback(packet.packet_id))  # type: ignore[arg-type]
        got += 1
    assert broker.queues["mqtt-subscription-slow1qos1"].message_count == 0
    sub.close()
    pub.close()


def test_connect_larger_than_64_kib_is_refused_before_it_arrives(raw, bystander):
    big = raw()
    connect = encode(Connect(client_id="c" * 40_000, username="u", password=b"p" * 30_000))
    big.send(connect[:10])  # the fixed header announces 70 KB; the broker closes without waiting for the rest
    assert big.closed()
    fits = raw()
    fits.connect("c" * 65_000)  # a 65,000-byte client id: its CONNECT is just under 64 KiB
    bystander.check()


def test_after_connect_packets_up_to_16_mib(raw, bystander, broker: ThreadedBroker):
    r = raw()
    r.connect("big-publisher")
    r.send(Publish("by/large", b"y" * 1_000_000, 1, packet_id=1))  # past the unauthenticated limit
    assert r.recv(timeout=10) == Puback(1)
    header = b"\x30" + bytes([0x81, 0x80, 0x80, 0x08])  # PUBLISH announcing 16 MiB + 1
    r.send(header)
    assert r.closed()  # a 256 MiB PUBLISH was read in full before
    with pytest.raises(Closed):
        r.recv(timeout=0.1)
    bystander.check()


@pytest.mark.parametrize("option", ["mqtt_max_packet_size", "mqtt_max_packet_size_unauthenticated"])
def test_packet_size_limits_are_checked(option):
    assert Options.from_kwargs(**{option: 1000}).as_kwargs()[option] == 1000
    with pytest.raises(ValueError, match="268,435,455"):
        Options.from_kwargs(**{option: 300_000_000})


@pytest.mark.fakebroker(output_buffer_limit=LIMIT)
@pytest.mark.parametrize("protocol", ["stomp", "amqp", "web_stomp"])
def test_stomp_and_amqp_hold_deliveries_in_the_queue_while_the_client_does_not_read(
        broker: ThreadedBroker, bystander, protocol):
    # No-ack consumers (STOMP ack:auto, AMQP no_ack) have no prefetch window: the channel stops delivering once
    # the client is output_buffer_limit behind, and resumes as it reads, as RabbitMQ's credit flow does.
    import socket

    from targets import TARGETS

    target = TARGETS[protocol]()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(target.address(broker))
    before = sum(q.consumer_count for q in broker.queues.values())
    opening = target.subscriber(f"slow-{protocol}", "flood.#")
    assert opening is not None
    sock.sendall(opening)
    deadline = time.monotonic() + 5
    while sum(q.consumer_count for q in broker.queues.values()) == before:
        assert time.monotonic() < deadline, "no consumer"
        time.sleep(0.005)
    count = 600  # 39 MB
    body = b"\xab" * 65_000  # counted on the wire: STOMP's framing is text; AMQP's rarely holds 0xab
    for n in range(count):
        broker.publish("amq.topic", f"flood.{n}", body)
    waiting = sum(q.message_count for q in broker.queues.values())
    assert waiting > count // 2  # held in the queue, not buffered for the socket (all of it was before)
    bystander.check()
    # Reading resumes the deliveries: every message arrives, none is lost.
    sock.settimeout(10)
    received = 0
    while received < count * len(body):
        chunk = sock.recv(1 << 20)
        assert chunk, "the broker closed the connection"
        received += chunk.count(0xAB)
    assert sum(q.message_count for q in broker.queues.values()) == 0  # all delivered (AMQP framing may hold 0xab)
    sock.close()


@pytest.mark.fakebroker(output_buffer_limit=256 * 1024)
def test_a_client_that_never_reads_its_answers_is_not_read_past_the_limit(broker: ThreadedBroker, bystander):
    # PINGREQ after PINGREQ, no PINGRESP read: once 256 KiB of answers wait, the broker stops reading the client
    # (as RabbitMQ's reader stops on its busy socket) instead of buffering answers for as long as it sends.
    sock = socket.create_connection(tuple(broker.mqtt))  # type: ignore[arg-type]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(encode(Connect(client_id="flooder", keepalive=0)))
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    sock.settimeout(1)
    sent = 0
    with contextlib.suppress(TimeoutError):
        while sent < 32 * 1024 * 1024:
            sent += sock.send(b"\xc0\x00" * 8192)
    assert sent < 32 * 1024 * 1024  # the client was held back: its sends filled the sockets' buffers and stopped
    info = broker.clients.get("flooder")
    assert info is not None and info.output_buffered <= 256 * 1024 + 64 * 1024, info.output_buffered
    bystander.check()
    # Reading again, the client gets its answers: the broker reads it again as its output drains. (A larger
    # receive buffer: with 4 KiB, TCP's small windows take a fifth of a second each.)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    got = 0
    sock.settimeout(10)
    while got < 1024 * 1024:
        data = sock.recv(65536)
        assert data and set(data) <= {0xD0, 0x00}, data[:8]
        got += len(data)
    sock.close()


@pytest.mark.fakebroker(output_buffer_limit=128 * 1024)
def test_input_held_by_a_stall_and_by_the_limit_is_handled_in_the_order_it_came(broker: ThreadedBroker) -> None:
    # Two reads held while the client is stalled; on resume the first (2,400 SUBSCRIBEs, each answered with a 5 KB
    # retained message) puts the output past the limit part-way, so its rest is held again: it must still come
    # before the second read.
    publisher = RawMqtt(tuple(broker.mqtt))  # type: ignore[arg-type]
    publisher.connect("retainer")
    publisher.send(Publish("r", b"m" * 5_000, 1, retain=True, packet_id=1))
    assert publisher.recv() == Puback(1)
    client = RawMqtt(tuple(broker.mqtt), rcvbuf=4096)  # type: ignore[arg-type]
    client.connect("reader", keepalive=0)
    broker.stall("reader")
    first = b"".join(encode(Subscribe(pid, [("r", 0)])) for pid in range(1, 2401))  # 19 KB: two slices
    second = encode(Subscribe(1000, [("r", 0)]))
    (conn,) = [c for c in broker._node.runtime.connections.values() if c.client_id == "reader"]
    # As if the event loop had read them just before the stall took effect.
    broker._call(conn.data_received, first)
    broker._call(conn.data_received, second)
    broker.resume("reader")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    acks = [p.packet_id for p in (client.recv(timeout=10) for _ in range(2 * 2401)) if isinstance(p, Suback)]
    assert acks == [*range(1, 2401), 1000]
    client.close()
    publisher.close()
