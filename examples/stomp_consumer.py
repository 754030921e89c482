"""Consume messages over STOMP, as in "RabbitMQ in Depth", chapter 9 (ported to stomp.py 9).

Subscribes to ``/queue/stomp-messages`` with client acknowledgements, prints each message with its destination
and headers, and acknowledges it; stops after ``--count`` messages.

    python examples/stomp_consumer.py --host 127.0.0.1 --port 61613 --count 1
"""

from __future__ import annotations

import argparse
import queue
import sys

import stomp


class Printer(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.frames: queue.Queue[stomp.utils.Frame] = queue.Queue()

    def on_message(self, frame: stomp.utils.Frame) -> None:
        self.frames.put(frame)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=61613)
    parser.add_argument("--destination", default="/queue/stomp-messages")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    conn = stomp.Connection12([(args.host, args.port)], vhost="/")
    printer = Printer()
    conn.set_listener("printer", printer)
    conn.connect("guest", "guest", wait=True)
    conn.subscribe(args.destination, id="consumer-1", ack="client-individual",
                   headers={"receipt": "subscribed"})
    print(f"subscribed to {args.destination}", flush=True)
    try:
        for _ in range(args.count):
            try:
                frame = printer.frames.get(timeout=args.timeout)
            except queue.Empty:
                print("no message", file=sys.stderr)
                return 1
            print(f"{frame.headers['destination']}: {frame.body} "
                  f"(app-id={frame.headers.get('app-id')}, redelivered={frame.headers['redelivered']})", flush=True)
            conn.ack(frame.headers["ack"])
    finally:
        conn.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
