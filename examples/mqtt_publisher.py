"""Publish one message over MQTT, as in "RabbitMQ in Depth", chapter 9 (ported to paho-mqtt 2.x).

The book's publisher sends "hello world from MQTT via Python" to the topic ``mqtt/example`` at QoS 1. With
RabbitMQ's MQTT plugin (or fakebroker) it arrives on the ``amq.topic`` exchange with routing key
``mqtt.example``, so any AMQP queue bound there with ``#`` or ``mqtt.#`` gets it.

    python examples/mqtt_publisher.py --host 127.0.0.1 --port 1883
"""

from __future__ import annotations

import argparse
import sys

import paho.mqtt.client as mqtt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--client-id", default="rmqid-test")
    parser.add_argument("--topic", default="mqtt/example")
    parser.add_argument("--message", default="hello world from MQTT via Python")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    args = parser.parse_args(argv)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=mqtt.MQTTv311)
    client.connect(args.host, args.port)
    client.loop_start()
    try:
        info = client.publish(args.topic, args.message, qos=args.qos)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            print(f"not acknowledged: {args.topic}", file=sys.stderr)
            return 1
        print(f"published {args.topic!r} qos={args.qos} mid={info.mid}: {args.message}", flush=True)
    finally:
        client.disconnect()
        client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
