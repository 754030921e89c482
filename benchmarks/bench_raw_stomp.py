"""The broker's own cost for STOMP, measured with clients that cost next to nothing, beside a real RabbitMQ.

    flock /tmp/rabbitmq.lock python benchmarks/bench_raw_stomp.py --rounds 3 --fakebroker-loop asyncio,uvloop
    python benchmarks/bench_raw_stomp.py --rabbitmq-port 0         # fakebroker only

fakebroker runs as ``fakebroker serve`` with only its STOMP listener, on a free port; RabbitMQ is the node that
listens on 127.0.0.1 (``--rabbitmq-port``, 61613), whose CPU is read from its ``beam.smp`` process (which also
serves that node's other listeners and whatever else talks to it). The clients are raw STOMP 1.2 sockets in this
process: blocking calls to connect and subscribe, then asyncio protocols that count frame ends (NUL; the payload
is ASCII letters) or acknowledge each message, and publishers that write pre-encoded SEND frames in batches.
Each scenario checks that every receiver got exactly the messages sent. The scenarios, each round once per
broker with the order alternating, and the report (medians, per-round ratios to RabbitMQ) are ``rawkit``'s.

Scenarios:
  connect  sequential TCP connect, CONNECT, CONNECTED, DISCONNECT with a receipt, RECEIPT, close
  send     one publisher -> one subscriber (ack:auto) of /queue/<name>, no receipts; messages per second
  fanout   one publisher -> N subscribers (ack:auto) of /topic/<name>; deliveries per second
  receipt  every SEND asks for a receipt (at most 200 awaited), the subscriber (ack:client-individual,
           prefetch-count:20) ACKs every MESSAGE; messages per second
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence

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
    management,
    payload_text,
)

CONNECT = b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:0,0\n\n\x00"
DISCONNECT = b"DISCONNECT\nreceipt:bye\n\n\x00"
QUEUES: set[str] = set()  # /queue/ queues this run declared (durable: deleted from RabbitMQ at the end)


def expect(reader: Reader, command: bytes) -> bytes:
    """The next frame, which must be ``command``."""
    frame = reader.until(b"\x00").lstrip(b"\r\n")  # EOLs between frames are allowed
    if not frame.startswith(command + b"\n"):
        raise RuntimeError(f"expected {command.decode()}, got {frame[:300]!r}")
    return frame


def stomp_connect(reader: Reader, n: int) -> None:
    """CONNECT, CONNECTED, DISCONNECT with a receipt, RECEIPT."""
    reader.sock.sendall(CONNECT)
    expect(reader, b"CONNECTED")
    reader.sock.sendall(DISCONNECT)
    expect(reader, b"RECEIPT")


def opened(port: int, subscribe: str | None = None) -> Reader:
    """A connected STOMP client; subscribed (``subscribe``: the SUBSCRIBE headers) once the receipt is there."""
    reader = Reader(dial(port))
    reader.sock.sendall(CONNECT)
    expect(reader, b"CONNECTED")
    if subscribe is not None:
        reader.sock.sendall(f"SUBSCRIBE\nid:0\n{subscribe}\nreceipt:sub\n\n\x00".encode())
        expect(reader, b"RECEIPT")
    return reader


def send_frame(destination: str, payload: bytes, receipt: bool = False) -> bytes:
    head = f"SEND\ndestination:{destination}\ncontent-length:{len(payload)}\n" + ("receipt:r\n" if receipt else "")
    return head.encode() + b"\n" + payload + b"\x00"


def queue(tag: str) -> str:
    name = f"rawbench-{RUN}-{tag}"
    QUEUES.add(name)
    return f"/queue/{name}"


async def fire_and_forget(port: int, count: int, subscribers: int, payload: bytes,
                          destination: str) -> tuple[int, float]:
    """SEND without receipts from one publisher to ``subscribers`` ack:auto subscribers; (deliveries, seconds)."""
    progress = asyncio.Event()
    tally = [0]
    subs = []
    for _ in range(subscribers):
        sub = Counter(progress.set, tally, marker=b"\x00")
        await adopt(opened(port, f"destination:{destination}\nack:auto"), sub)
        subs.append(sub)
    pub = Counter(progress.set, marker=b"\x00")
    await adopt(opened(port), pub)
    frame = send_frame(destination, payload)
    total = count * subscribers
    elapsed = await fan_out(pub, subs, frame, count, lambda: tally[0], DISCONNECT, progress, [pub, *subs])
    check_count("MESSAGE frames", tally[0], total)
    check_count("frames to the publisher", pub.received, 0)
    return total, elapsed


class AckingSubscriber(Peer):
    """Receives MESSAGE frames and ACKs each by its ``ack`` header (one write per read)."""

    def __init__(self, on_data: Callable[[], None]) -> None:
        super().__init__(on_data)
        self.buf = b""
        self.messages = 0

    def data_received(self, data: bytes) -> None:
        frames = (self.buf + data).split(b"\x00")
        self.buf = frames.pop()
        acks = []
        for frame in frames:
            frame = frame.lstrip(b"\r\n")
            i = frame.find(b"\nack:") + 5
            if not frame.startswith(b"MESSAGE\n") or i < 5:
                self.fail(f"expected a MESSAGE with an ack header, got {frame[:300]!r}")
                return
            acks.append(b"ACK\nid:" + frame[i:frame.index(b"\n", i)] + b"\n\n\x00")
        if acks:
            self.write(b"".join(acks))
            self.messages += len(acks)
        self.on_data()


async def with_receipts(port: int, count: int, payload: bytes, destination: str) -> tuple[int, float]:
    """Every SEND with a receipt, every MESSAGE ACKed; (messages, seconds)."""
    progress = asyncio.Event()
    sub = AckingSubscriber(progress.set)
    await adopt(opened(port, f"destination:{destination}\nack:client-individual\nprefetch-count:20"), sub)
    pub = Counter(progress.set, marker=b"\x00")  # counts RECEIPT frames
    await adopt(opened(port), pub)
    frame = send_frame(destination, payload, receipt=True)
    elapsed = await acknowledged(pub, sub, lambda first, n: pub.write(frame * n), count, lambda: pub.received,
                                 DISCONNECT, progress, ("messages", "receipts"))
    return count, elapsed


def scenarios(args: argparse.Namespace) -> Sequence[tuple[str, str, str, Scenario]]:
    payload = payload_text(args.payload)
    return [
        ("connect", "sequential connect + CONNECT/CONNECTED + DISCONNECT/RECEIPT", "conn",
         lambda port, tag: connect_loop(port, args.seconds, stomp_connect)),
        ("send", f"SEND to /queue/, {args.payload} B, 1 -> 1, ack:auto", "msg",
         lambda port, tag: asyncio.run(fire_and_forget(port, args.messages, 1, payload, queue(tag + "send")))),
        ("fanout", f"SEND to /topic/, fan-out 1 -> {args.fanout}", "delivery",
         lambda port, tag: asyncio.run(fire_and_forget(port, max(1, args.messages * 5 // args.fanout), args.fanout,
                                                       payload, f"/topic/rawbench.{RUN}.{tag}"))),
        ("receipt", f"SEND with receipt, ACK each (prefetch 20), {args.payload} B, 1 -> 1", "msg",
         lambda port, tag: asyncio.run(with_receipts(port, args.messages // 2, payload, queue(tag + "ack")))),
    ]


def delete_queues() -> None:
    """Delete this run's /queue/ queues (durable) from the RabbitMQ node through its management API."""
    for name in sorted(QUEUES):
        management(15672, "DELETE", f"/api/queues/%2F/{name}")  # 404 when only fakebroker had it


def main() -> None:
    beside_rabbitmq(__doc__, "stomp", 61613, "connect,send,fanout,receipt", scenarios, delete_queues)


if __name__ == "__main__":
    main()
