"""AMQP 0-9-1 with pika: fakebroker beside a real RabbitMQ in the same run.

    python benchmarks/bench_amqp.py                                  # fakebroker only
    python benchmarks/bench_amqp.py --rabbitmq 127.0.0.1:5672        # and a real RabbitMQ (guest/guest)
    python benchmarks/bench_amqp.py --messages 20000 --confirms 2000 --connections 300 --repeat 3

Three measurements per broker, each the best of ``--repeat`` runs:

- **publish → consume**: one pika BlockingConnection publishes N messages to a fresh queue while a second one,
  in another thread, consumes them with manual acks (multiple, every 50) and prefetch 200; the clock runs from
  the first publish until the consumer has the N-th message.
- **publish with confirms**: one channel in confirm mode publishes N messages, each waiting for its basic.ack
  (pika's blocking channel confirms synchronously), to a queue that nobody consumes.
- **connection open/close**: open a connection and a channel, close it, M times in a row.

fakebroker runs as ``fakebroker serve`` in its own process (as RabbitMQ does), on the wall clock; with
``--in-process`` also inside this process, where its event loop shares the GIL with pika. On a shared real node
run it under the node's lock (``flock /tmp/rabbitmq.lock python benchmarks/bench_amqp.py --rabbitmq ...``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pika  # type: ignore[import-untyped]  # no type information in pika
from rawkit import fakebroker_cmd, free_port

import fakebroker
from fakebroker.protocols import listener_specs


@contextlib.contextmanager
def fakebroker_process() -> Iterator[str]:
    port = free_port()
    # Only the AMQP listener: the others' default ports may be a real RabbitMQ's.
    proc = subprocess.Popen(
        fakebroker_cmd("amqp")(port, ""),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        if not proc.stdout.readline().startswith("fakebroker is serving"):
            raise RuntimeError("fakebroker serve did not start")
        yield f"amqp://guest:guest@127.0.0.1:{port}/%2F"
    finally:
        proc.terminate()
        proc.wait(10)


def connect(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


def publish_consume(url: str, count: int, payload: bytes) -> float:
    queue = f"bench-{uuid.uuid4().hex[:12]}"
    setup = connect(url)
    setup.channel().queue_declare(queue, auto_delete=False)
    ready, done = threading.Event(), threading.Event()
    received = 0
    errors: list[BaseException] = []

    def consume() -> None:
        nonlocal received
        try:
            conn = connect(url)
            ch = conn.channel()
            ch.basic_qos(prefetch_count=200)

            def on_message(c: object, method: pika.spec.Basic.Deliver, props: object, body: bytes) -> None:
                nonlocal received
                received += 1
                if received % 50 == 0 or received == count:
                    ch.basic_ack(method.delivery_tag, multiple=True)
                if received == count:
                    done.set()

            ch.basic_consume(queue, on_message)
            ready.set()
            while not done.is_set():
                conn.process_data_events(time_limit=0.05)
            conn.close()
        except BaseException as exc:  # report it to the main thread
            errors.append(exc)
            ready.set()
            done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    ready.wait(10)
    pub = connect(url)
    ch = pub.channel()
    start = time.perf_counter()
    for _ in range(count):
        ch.basic_publish("", queue, payload)
    if not done.wait(max(60.0, count / 500)):
        raise RuntimeError(f"only {received} of {count} messages arrived")
    elapsed = time.perf_counter() - start
    thread.join(10)
    pub.close()
    setup.channel().queue_delete(queue)
    setup.close()
    if errors:
        raise errors[0]
    return count / elapsed


def publish_confirms(url: str, count: int, payload: bytes) -> float:
    queue = f"bench-{uuid.uuid4().hex[:12]}"
    conn = connect(url)
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    start = time.perf_counter()
    for _ in range(count):
        ch.basic_publish("", queue, payload)
    elapsed = time.perf_counter() - start
    ch.queue_delete(queue)
    conn.close()
    return count / elapsed


def open_close(url: str, count: int) -> float:
    params = pika.URLParameters(url)
    start = time.perf_counter()
    for _ in range(count):
        conn = pika.BlockingConnection(params)
        conn.channel()
        conn.close()
    return count / (time.perf_counter() - start)


def best(repeat: int, run: Callable[[], float]) -> float:
    return max(run() for _ in range(repeat))


def measure(url: str, args: argparse.Namespace, payload: bytes) -> list[float]:
    return [
        best(args.repeat, lambda: publish_consume(url, args.messages, payload)),
        best(args.repeat, lambda: publish_confirms(url, args.confirms, payload)),
        best(args.repeat, lambda: open_close(url, args.connections)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages in the publish -> consume run")
    parser.add_argument("--confirms", type=int, default=2_000, help="messages in the confirms run")
    parser.add_argument("--connections", type=int, default=200, help="connections opened and closed")
    parser.add_argument("--payload", type=int, default=64, help="body size in bytes")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the best is reported")
    parser.add_argument("--rabbitmq", metavar="HOST:PORT", help="also measure a real RabbitMQ (guest/guest)")
    parser.add_argument("--in-process", action="store_true", help="also measure fakebroker.start() in-process")
    args = parser.parse_args()
    payload = os.urandom(args.payload)

    results: dict[str, list[float]] = {}
    with fakebroker_process() as url:
        results["fakebroker serve"] = measure(url, args, payload)
    if args.in_process:
        off = {spec.option: None for spec in listener_specs() if spec.name != "amqp"}
        with fakebroker.start(clock="wall", **off) as broker:
            results["fakebroker (in-process)"] = measure(broker.amqp_url, args, payload)
    if args.rabbitmq:
        results["RabbitMQ"] = measure(f"amqp://guest:guest@{args.rabbitmq}/%2F", args, payload)

    names = list(results)
    rows = [f"publish -> consume, {args.messages:,}", f"publish + confirm, {args.confirms:,}",
            f"open/close, {args.connections:,} conns"]
    print(f"pika {pika.__version__}, {args.payload}-byte bodies, best of {args.repeat} (per second)")
    print(f"{'':<32}" + "".join(f"{name:>26}" for name in names))
    for i, row in enumerate(rows):
        print(f"{row:<32}" + "".join(f"{results[name][i]:>26,.0f}" for name in names))
    if "RabbitMQ" in results:
        fake = results["fakebroker serve"]
        ratio = ", ".join(f"{f / r:.2f}x" for f, r in zip(fake, results["RabbitMQ"], strict=True))
        print(f"fakebroker serve / RabbitMQ: {ratio}")


if __name__ == "__main__":
    main()
