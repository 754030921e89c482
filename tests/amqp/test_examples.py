"""The AMQP examples (rabbitpy, as in "RabbitMQ in Depth" chapter 9) run unchanged against fakebroker, as
subprocesses, together with the chapter's MQTT publisher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fakebroker

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
TIMEOUT = 30


def run(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    return out


def test_rabbitpy_setup_then_mqtt_publish_then_rabbitpy_get() -> None:
    with fakebroker.start() as broker:
        out = run(str(EXAMPLES / "amqp_setup.py"), "--url", broker.amqp_url)
        assert out.stdout == "declared mqtt-messages, bound to amq.topic with #\n"
        q = broker.queues["mqtt-messages"]
        assert (q.durable, q.auto_delete, q.exclusive) == (False, False, False)
        assert [(b.source, b.routing_key) for b in broker.bindings if b.destination == "mqtt-messages"
                and b.source] == [("amq.topic", "#")]
        assert run(str(EXAMPLES / "amqp_get.py"), "--url", broker.amqp_url).stdout == "empty\n"
        host, port = broker.mqtt
        run(str(EXAMPLES / "mqtt_publisher.py"), "--host", host, "--port", str(port))
        out = run(str(EXAMPLES / "amqp_get.py"), "--url", broker.amqp_url)
        assert out.stdout == ("mqtt.example {'x-mqtt-dup': False, 'x-mqtt-publish-qos': 1} "
                              "hello world from MQTT via Python\n")
        assert broker.queues["mqtt-messages"].messages == 0
