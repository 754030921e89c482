"""Subscribe over MQTT and print what arrives, as in "RabbitMQ in Depth", chapter 9 (ported to paho-mqtt 2.x).

The book's subscriber connects with the client id ``facebook`` and subscribes to image topics; RabbitMQ's MQTT
plugin gives it the queue ``mqtt-subscription-facebookqos0`` bound to ``amq.topic`` with ``image.#``. A message
published to ``image/new/profile`` reaches subscribers of ``image/#``, ``image/new/+`` and
``image/new/profile`` alike.

    python examples/mqtt_subscriber.py --host 127.0.0.1 --port 1883 --topic 'image/#'

It prints ``subscribed ...`` once the broker has granted the subscriptions, then one line per message
(``<topic> qos=<qos> <payload>``). It stops after ``--count`` messages, or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import queue
import sys
from typing import Any

import paho.mqtt.client as mqtt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--client-id", default="facebook")
    parser.add_argument("--topic", action="append", help="topic filter (repeatable; default image/#)")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=0)
    parser.add_argument("--count", type=int, default=0, help="exit after this many messages (0: run forever)")
    args = parser.parse_args(argv)
    topics = args.topic or ["image/#"]

    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=mqtt.MQTTv311)
    client.on_connect = lambda c, u, flags, rc, props: events.put(("connected", rc))
    client.on_subscribe = lambda c, u, mid, codes, props: events.put(("subscribed", [code.value for code in codes]))
    client.on_message = lambda c, u, msg: events.put(("message", msg))
    client.connect(args.host, args.port)
    client.loop_start()
    received = 0
    try:
        kind, rc = events.get(timeout=10)
        if rc.is_failure:
            print(f"connection refused: {rc}", file=sys.stderr)
            return 1
        client.subscribe([(topic, args.qos) for topic in topics])
        while args.count == 0 or received < args.count:
            kind, value = events.get()
            if kind == "subscribed":
                print(f"subscribed {' '.join(topics)} granted={value}", flush=True)
            elif kind == "message":
                received += 1
                print(f"{value.topic} qos={value.qos} {value.payload.decode(errors='replace')}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
