"""The broker's own cost for AMQP 0-9-1, measured with clients that cost next to nothing, beside a real RabbitMQ.

    flock /tmp/rabbitmq.lock python benchmarks/bench_raw_amqp.py --rounds 3 --fakebroker-loop asyncio,uvloop
    python benchmarks/bench_raw_amqp.py --rabbitmq-port 0          # fakebroker only

fakebroker runs as ``fakebroker serve`` with only its AMQP listener, on a free port; RabbitMQ is the node that
listens on 127.0.0.1 (``--rabbitmq-port``, 5672), whose CPU is read from its ``beam.smp`` process (which also
serves that node's other listeners and whatever else talks to it). The clients are raw sockets in this process
writing frames that pamqp encoded once, before the clock runs: blocking calls to open a connection, a channel,
declare and consume, then asyncio protocols that count the bytes of deliveries (each delivery is the same
basic.deliver, header and body frames, so every byte is accounted for) or acknowledge each delivery, and
publishers that write pre-encoded basic.publish frames in batches. Each scenario checks that every receiver got
exactly the messages sent. The rounds (each broker once per round, the order alternating) and the report
(medians, per-round ratios to RabbitMQ) are ``rawkit``'s.

Scenarios:
  connect  sequential TCP connect, protocol header, start/start-ok, tune/tune-ok, open/open-ok, close/close-ok
  publish  one publisher (basic.publish to the default exchange) -> one no-ack consumer of an exclusive queue
  fanout   one publisher -> a fanout exchange -> N queues, one no-ack consumer each; deliveries per second
  confirm  publisher confirms (at most 200 unconfirmed) -> one consumer with prefetch 20 that acks every delivery
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
from collections.abc import Callable, Sequence

from pamqp import body, frame, header
from pamqp import commands as cmd
from pamqp.base import Frame
from rawkit import (
    RUN,
    Counter,
    Peer,
    Reader,
    Scenario,
    acknowledged,
    adopt,
    beside_rabbitmq,
    check_count,
    connect_loop,
    dial,
    fan_out,
)

CONSUMER_TAG = "c"


def encode(*methods: Frame | header.ContentHeader | body.ContentBody, channel: int = 1) -> bytes:
    return b"".join(frame.marshal(m, channel) for m in methods)


PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
START_OK = encode(cmd.Connection.StartOk(client_properties={"product": "rawbench"}, mechanism="PLAIN",
                                         response="\x00guest\x00guest", locale="en_US"), channel=0)
TUNE_OK_OPEN = encode(cmd.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0),
                      cmd.Connection.Open(virtual_host="/"), channel=0)
CLOSE = encode(cmd.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), channel=0)
#: basic.ack on channel 1 up to the delivery tag (8 bytes), then multiple (1 byte) and the frame end.
ACK_HEAD = encode(cmd.Basic.Ack(delivery_tag=1))[:-10]
ACK_SIZE = len(encode(cmd.Basic.Ack()))


def call(reader: Reader, data: bytes, reply: type[Frame]) -> bytes:
    """Write ``data`` and read the next frame, which must be the method ``reply``; its payload."""
    if data:
        reader.sock.sendall(data)
    kind, _, size = struct.unpack("!BHI", reader.exactly(7))
    payload = reader.exactly(size + 1)
    if kind != 1 or struct.unpack("!I", payload[:4])[0] != reply.index:
        raise RuntimeError(f"expected {reply.name}, got frame type {kind}: {payload[:200]!r}")
    return payload[:-1]


def handshake(reader: Reader) -> None:
    """Protocol header, start/start-ok, tune/tune-ok + open, open-ok."""
    call(reader, PROTOCOL_HEADER, cmd.Connection.Start)
    call(reader, START_OK, cmd.Connection.Tune)
    call(reader, TUNE_OK_OPEN, cmd.Connection.OpenOk)


def amqp_connect(reader: Reader, n: int) -> None:
    handshake(reader)
    call(reader, CLOSE, cmd.Connection.CloseOk)


def channel(port: int, *setup: tuple[Frame, type[Frame]]) -> Reader:
    """A connection with channel 1 open and each (method, its reply) of ``setup`` done."""
    reader = Reader(dial(port))
    handshake(reader)
    call(reader, encode(cmd.Channel.Open()), cmd.Channel.OpenOk)
    for method, reply in setup:
        call(reader, encode(method), reply)
    return reader


def consumer(port: int, queue: str, exchange: str | None, no_ack: bool) -> Reader:
    """A connection consuming from its exclusive ``queue`` (bound to ``exchange`` if given)."""
    setup: list[tuple[Frame, type[Frame]]] = [
        (cmd.Queue.Declare(queue=queue, exclusive=True, auto_delete=True), cmd.Queue.DeclareOk)]
    if exchange is not None:
        setup.append((cmd.Queue.Bind(queue=queue, exchange=exchange), cmd.Queue.BindOk))
    if not no_ack:
        setup.append((cmd.Basic.Qos(prefetch_count=20), cmd.Basic.QosOk))
    setup.append((cmd.Basic.Consume(queue=queue, consumer_tag=CONSUMER_TAG, no_ack=no_ack), cmd.Basic.ConsumeOk))
    return channel(port, *setup)


def message(exchange: str, routing_key: str, payload: bytes) -> tuple[bytes, bytes]:
    """(basic.publish with its header and body frames, the basic.deliver a consumer receives for it)."""
    content = encode(header.ContentHeader(0, len(payload), cmd.Basic.Properties()), body.ContentBody(payload))
    publish = encode(cmd.Basic.Publish(exchange=exchange, routing_key=routing_key)) + content
    deliver = encode(cmd.Basic.Deliver(consumer_tag=CONSUMER_TAG, delivery_tag=1, exchange=exchange,
                                       routing_key=routing_key)) + content
    return publish, deliver


async def no_ack(port: int, count: int, consumers: int, payload: bytes, tag: str) -> tuple[int, float]:
    """One publisher -> ``consumers`` no-ack consumers (through a fanout exchange if more than one)."""
    progress = asyncio.Event()
    name = f"rawbench.{RUN}.{tag}"
    exchange = name if consumers > 1 else None
    declare = [(cmd.Exchange.Declare(exchange=name, exchange_type="fanout", auto_delete=True),
                cmd.Exchange.DeclareOk)] if exchange else []
    pub_reader = channel(port, *declare)
    tally = [0]
    subs = []
    for i in range(consumers):
        sub = Counter(progress.set, tally)
        await adopt(consumer(port, f"{name}.{i}", exchange, no_ack=True), sub)
        subs.append(sub)
    pub = Counter(progress.set)
    await adopt(pub_reader, pub)
    publish, deliver = message(exchange or "", "bench" if exchange else f"{name}.0", payload)
    size = len(deliver)
    total = count * consumers
    elapsed = await fan_out(pub, subs, publish, count, lambda: tally[0] // size, CLOSE, progress, [pub, *subs])
    check_count("bytes of deliveries", tally[0], total * size)
    check_count("bytes to the publisher", pub.received, 0)
    return total, elapsed


class AckingConsumer(Peer):
    """Receives deliveries of one known size and acks each (one write per read)."""

    def __init__(self, deliver: bytes, on_data: Callable[[], None]) -> None:
        super().__init__(on_data)
        self.size = len(deliver)
        self.tag_at = 7 + 4 + 1 + len(CONSUMER_TAG)  # frame header, class and method, consumer tag
        self.prefix = deliver[:self.tag_at]
        self.buf = b""
        self.messages = 0

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        size, at = self.size, self.tag_at
        whole = len(buf) // size * size
        acks = []
        for i in range(0, whole, size):
            if buf[i:i + at] != self.prefix:
                self.fail(f"expected a basic.deliver, got {buf[i:i + 100]!r}")
                return
            acks.append(ACK_HEAD + buf[i + at:i + at + 8] + b"\x00\xce")
        if acks:
            self.write(b"".join(acks))
            self.messages += len(acks)
        self.buf = buf[whole:]
        self.on_data()


class Confirms(Peer):
    """Counts publisher confirms (basic.ack, single or multiple); a nack or a tag confirmed twice fails."""

    def __init__(self, on_data: Callable[[], None]) -> None:
        super().__init__(on_data)
        self.buf = b""
        self.upto = 0  # every tag up to here is confirmed
        self.above: set[int] = set()  # and these

    @property
    def confirmed(self) -> int:
        return self.upto + len(self.above)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        whole = len(buf) // ACK_SIZE * ACK_SIZE
        for i in range(0, whole, ACK_SIZE):
            if buf[i:i + len(ACK_HEAD)] != ACK_HEAD:
                self.fail(f"expected a basic.ack, got {buf[i:i + 100]!r}")
                return
            tag = int.from_bytes(buf[i + 11:i + 19], "big")
            if tag <= self.upto or tag in self.above:
                self.fail(f"delivery tag {tag} confirmed twice")
                return
            if buf[i + 19]:  # multiple
                self.above = {t for t in self.above if t > tag}
                self.upto = tag
            else:
                self.above.add(tag)
        while self.upto + 1 in self.above:
            self.above.remove(self.upto + 1)
            self.upto += 1
        self.buf = buf[whole:]
        self.on_data()


async def confirmed(port: int, count: int, payload: bytes, tag: str) -> tuple[int, float]:
    """Publisher confirms within a window -> one consumer acking every delivery; (messages, seconds)."""
    progress = asyncio.Event()
    queue = f"rawbench.{RUN}.{tag}"
    pub_reader = channel(port, (cmd.Confirm.Select(), cmd.Confirm.SelectOk))
    publish, deliver = message("", queue, payload)
    sub = AckingConsumer(deliver, progress.set)
    await adopt(consumer(port, queue, None, no_ack=False), sub)
    pub = Confirms(progress.set)
    await adopt(pub_reader, pub)
    elapsed = await acknowledged(pub, sub, lambda first, n: pub.write(publish * n), count, lambda: pub.confirmed,
                                 CLOSE, progress, ("deliveries", "confirms"))
    return count, elapsed


def scenarios(args: argparse.Namespace) -> Sequence[tuple[str, str, str, Scenario]]:
    payload = os.urandom(args.payload)
    return [
        ("connect", "sequential connect + start/tune/open + close", "conn",
         lambda port, tag: connect_loop(port, args.seconds, amqp_connect)),
        ("publish", f"basic.publish, {args.payload} B, 1 -> 1 no-ack consumer", "msg",
         lambda port, tag: asyncio.run(no_ack(port, args.messages, 1, payload, tag + "pub"))),
        ("fanout", f"fanout exchange, 1 -> {args.fanout} no-ack consumers", "delivery",
         lambda port, tag: asyncio.run(no_ack(port, max(1, args.messages * 5 // args.fanout), args.fanout, payload,
                                              tag + "fan"))),
        ("confirm", f"publisher confirms, consumer acks each (prefetch 20), {args.payload} B, 1 -> 1", "msg",
         lambda port, tag: asyncio.run(confirmed(port, args.messages // 2, payload, tag + "conf"))),
    ]


def main() -> None:
    beside_rabbitmq(__doc__, "amqp", 5672, "connect,publish,fanout,confirm", scenarios)


if __name__ == "__main__":
    main()
