"""Declare the queue the MQTT examples publish into, with rabbitpy, as in "RabbitMQ in Depth", chapter 9.

The chapter prepares RabbitMQ for its MQTT publisher over AMQP: a queue ``mqtt-messages`` bound to ``amq.topic``
with ``#``, so it receives every MQTT message. The code below does that the chapter's way (rabbitpy's
Connection, channel and Queue, declare then bind), with the broker URL as an argument (the default is rabbitpy's
``amqp://guest:guest@localhost:5672/%2f``).

    python examples/amqp_setup.py --url amqp://guest:guest@127.0.0.1:5672/%2F
"""

from __future__ import annotations

import argparse

import rabbitpy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@localhost:5672/%2f")
    args = parser.parse_args(argv)

    with rabbitpy.Connection(args.url) as connection, connection.channel() as channel:
        queue = rabbitpy.Queue(channel, "mqtt-messages")
        queue.declare()
        queue.bind("amq.topic", "#")
    print("declared mqtt-messages, bound to amq.topic with #")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
