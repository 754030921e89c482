"""Read what arrived in ``mqtt-messages`` with rabbitpy's basic.get, as in "RabbitMQ in Depth", chapter 9.

    python examples/amqp_get.py --url amqp://guest:guest@127.0.0.1:5672/%2F

Prints one line per message (``<routing key> <headers> <body>``), acknowledging each, until the queue is empty;
``empty`` when there was nothing.
"""

from __future__ import annotations

import argparse

import rabbitpy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@localhost:5672/%2f")
    parser.add_argument("--queue", default="mqtt-messages")
    args = parser.parse_args(argv)

    got = 0
    with rabbitpy.Connection(args.url) as connection, connection.channel() as channel:
        queue = rabbitpy.Queue(channel, args.queue)
        while True:
            message = queue.get()
            if message is None:
                break
            headers = dict(sorted((message.properties.get("headers") or {}).items()))
            print(message.routing_key, headers, message.body.decode("utf-8", "replace"))
            message.ack()
            got += 1
    if not got:
        print("empty")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
