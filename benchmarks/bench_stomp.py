"""STOMP throughput: SEND -> MESSAGE through fakebroker (wall clock) and, beside it in the same run, a real RabbitMQ.

    python benchmarks/bench_stomp.py                                  # fakebroker only
    python benchmarks/bench_stomp.py --rabbitmq 127.0.0.1:61613       # and a RabbitMQ's STOMP listener
    python benchmarks/bench_stomp.py --count 50000 --payload 256 --repeat 3

Two raw-socket STOMP 1.2 clients (no client library in the way): a subscriber on ``/topic/bench.<random>`` with
``ack:auto``, and a publisher sending ``count`` SEND frames to it as fast as the socket takes them. Two runs:

- fire-and-forget: no receipts; the clock runs from the first SEND until the subscriber has the last MESSAGE;
- with a receipt every 100 frames: every 100th SEND asks for a receipt and the publisher waits for it before
  sending more (what an application that wants to know its messages arrived does).

Throughput is ``count`` / that time, best of ``--repeat``. Clients and broker share the machine (and for
fakebroker's ``start()``, the process).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

from rawkit import fakebroker_cmd, free_port

import fakebroker
from fakebroker.protocols import listener_specs

TIMEOUT = 60.0


@contextlib.contextmanager
def fakebroker_process() -> Iterator[tuple[str, int]]:
    """``fakebroker serve`` in its own process, as RabbitMQ runs: no GIL shared with the clients."""
    port = free_port()
    proc = subprocess.Popen(
        fakebroker_cmd("stomp")(port, ""),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        if not proc.stdout.readline().startswith("fakebroker is serving"):
            raise RuntimeError("fakebroker serve did not start")
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(10)


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.sock.sendall(b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00")
        self.until(b"\x00")

    def until(self, marker: bytes) -> bytes:
        """Read until ``marker`` (a frame's end, a receipt) is in the buffer; return and drop what came before."""
        while marker not in self.buf:
            data = self.sock.recv(1 << 20)
            if not data:
                raise RuntimeError(f"connection closed; got {self.buf[-200:]!r}")
            self.buf += data
        head, _, self.buf = self.buf.partition(marker)
        return head

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"DISCONNECT\n\n\x00")
            self.sock.close()


def run_once(host: str, port: int, count: int, payload: bytes, receipt_every: int | None) -> float:
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    sub = Conn(host, port)
    sub.sock.sendall(f"SUBSCRIBE\ndestination:/topic/{topic}\nid:0\nack:auto\nreceipt:sub\n\n\x00".encode())
    sub.until(b"receipt-id:sub")
    sub.until(b"\x00")
    pub = Conn(host, port)
    send = f"SEND\ndestination:/topic/{topic}\ncontent-length:{len(payload)}\n\n".encode() + payload + b"\x00"
    done = threading.Event()
    received = 0

    def subscriber() -> None:
        nonlocal received
        sock = sub.sock
        pending = sub.buf
        # Every server frame ends with NUL then LF; the payload has no NUL.
        while received < count:
            received += pending.count(b"\x00")
            if received >= count:
                break
            pending = sock.recv(1 << 20)
            if not pending:
                break
        done.set()

    thread = threading.Thread(target=subscriber, daemon=True)
    thread.start()
    start = time.perf_counter()
    if receipt_every is None:
        batch = send * 100
        for _ in range(count // 100):
            pub.sock.sendall(batch)
        pub.sock.sendall(send * (count % 100))
    else:
        with_receipt = send.replace(b"\n\n", b"\nreceipt:r\n\n", 1)
        sent = 0
        while sent < count:
            n = min(receipt_every, count - sent)
            pub.sock.sendall(send * (n - 1) + with_receipt)
            pub.until(b"receipt-id:r")
            sent += n
    if not done.wait(TIMEOUT):
        raise RuntimeError(f"only {received} of {count} messages arrived")
    elapsed = time.perf_counter() - start
    pub.close()
    sub.close()
    if received != count:
        raise RuntimeError(f"{received} messages arrived, expected {count}")
    return count / elapsed


def best(host: str, port: int, count: int, payload: bytes, receipt_every: int | None, repeat: int) -> float:
    return max(run_once(host, port, count, payload, receipt_every) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per run")
    parser.add_argument("--payload", type=int, default=64, help="payload size in bytes")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario; the best is reported")
    parser.add_argument("--rabbitmq", help="host:port of a RabbitMQ STOMP listener to measure beside fakebroker")
    args = parser.parse_args()
    payload = os.urandom(args.payload).replace(b"\x00", b"\x01")
    runs = [("fire-and-forget", None), ("receipt every 100", 100)]

    results: dict[str, list[float]] = {}
    others = {spec.option: None for spec in listener_specs() if spec.name != "stomp"}
    with fakebroker.start(clock="wall", **others) as broker:
        host, port = broker.stomp
        results["fakebroker"] = [best(host, port, args.count, payload, every, args.repeat) for _, every in runs]
    with fakebroker_process() as (host, port):
        results["fakebroker serve"] = [best(host, port, args.count, payload, every, args.repeat)
                                       for _, every in runs]
    if args.rabbitmq:
        host, _, port_text = args.rabbitmq.rpartition(":")
        results["RabbitMQ"] = [best(host, int(port_text), args.count, payload, every, args.repeat)
                               for _, every in runs]

    names = list(results)
    print(f"STOMP 1.2 SEND -> MESSAGE, one publisher, one subscriber, {args.count:,} messages of "
          f"{args.payload} bytes, best of {args.repeat}")
    print(f"{'run (msg/s)':<22}" + "".join(f"{name:>20}" for name in names))
    for i, (label, _) in enumerate(runs):
        print(f"{label:<22}" + "".join(f"{results[name][i]:>20,.0f}" for name in names))
    if "RabbitMQ" in results:
        for i, (label, _) in enumerate(runs):
            ratio = results["fakebroker serve"][i] / results["RabbitMQ"][i]
            print(f"fakebroker serve / RabbitMQ, {label}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
