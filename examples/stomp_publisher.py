"""Publish a message over STOMP, as in "RabbitMQ in Depth", chapter 9 (ported to stomp.py 9).

The book's publisher sends "Example Message" to ``/queue/stomp-messages``: RabbitMQ's STOMP plugin (or
fakebroker) declares the durable queue ``stomp-messages`` and publishes through the default exchange.
``--destination /exchange/stomp-routing/example`` publishes to an exchange with a routing key instead,
``/topic/<key>`` to ``amq.topic``. A receipt confirms the broker handled the SEND.

    python examples/stomp_publisher.py --host 127.0.0.1 --port 61613
"""

from __future__ import annotations

import argparse
import sys
import threading

import stomp


class Receipts(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: str | None = None

    def on_receipt(self, frame: stomp.utils.Frame) -> None:
        self.done.set()

    def on_error(self, frame: stomp.utils.Frame) -> None:
        self.error = f"{frame.headers.get('message')}: {frame.body}"
        self.done.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=61613)
    parser.add_argument("--destination", default="/queue/stomp-messages")
    parser.add_argument("--message", default="Example Message")
    parser.add_argument("--count", type=int, default=1)
    args = parser.parse_args(argv)

    conn = stomp.Connection12([(args.host, args.port)], vhost="/")
    listener = Receipts()
    conn.set_listener("receipts", listener)
    conn.connect("guest", "guest", wait=True)
    try:
        for n in range(args.count):
            listener.done.clear()
            conn.send(args.destination, args.message, content_type="text/plain",
                      headers={"app-id": "rabbitmq-in-depth", "receipt": f"msg-{n}"})
            if not listener.done.wait(10) or listener.error:
                print(f"not confirmed: {listener.error or 'no receipt'}", file=sys.stderr)
                return 1
            print(f"published to {args.destination}: {args.message}", flush=True)
    finally:
        conn.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
