"""The examples/ scripts (the "RabbitMQ in Depth" chapter 9 MQTT publisher and subscriber) run unchanged against
fakebroker, as subprocesses with the real paho-mqtt client."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

import fakebroker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 20  # a subprocess start is a fraction of a second; this only bounds a failing run


def script(name: str, broker: fakebroker.ThreadedBroker, *args: str) -> list[str]:
    host, port = broker.mqtt
    return [sys.executable, str(EXAMPLES / name), "--host", host, "--port", str(port), *args]


def eventually(predicate: Callable[[], bool]) -> None:
    """The broker sees a child's socket close a moment after the child exits: poll for the effect."""
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Lines:
    """Read a child's stdout line by line in a thread, so waiting for a line can time out."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line.rstrip("\n"))

    def next(self) -> str:
        try:
            return self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError(f"no output; stderr: {self.proc.stderr.read() if self.proc.stderr else ''}") from None


def test_publisher_message_reaches_a_queue_bound_to_amq_topic():
    with fakebroker.start() as broker:
        broker.declare_queue("mqtt-messages")
        broker.bind("mqtt-messages", "amq.topic", "#")
        out = subprocess.run(script("mqtt_publisher.py", broker), capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("published 'mqtt/example' qos=1")
        msg = broker.get("mqtt-messages")
        assert msg is not None
        assert (msg.exchange, msg.routing_key, msg.body) == ("amq.topic", "mqtt.example",
                                                             b"hello world from MQTT via Python")
        assert msg.properties == {"delivery_mode": 2, "headers": {"x-mqtt-publish-qos": 1, "x-mqtt-dup": False}}
        (logged,) = broker.messages
        assert (logged.protocol, logged.client_id) == ("mqtt", "rmqid-test")
        eventually(lambda: broker.clients == [])  # it disconnected
        assert len(broker.messages.filter(protocol="mqtt-will")) == 0


def test_subscriber_facebook_gets_image_messages():
    with fakebroker.start() as broker:
        proc = subprocess.Popen(script("mqtt_subscriber.py", broker, "--count", "2"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            lines = Lines(proc)
            assert lines.next() == "subscribed image/# granted=[0]"
            q = broker.queues["mqtt-subscription-facebookqos0"]
            assert (q.durable, q.auto_delete, q.consumers) == (False, True, 1)
            assert [b.routing_key for b in broker.bindings if b.source == "amq.topic"] == ["image.#"]
            out = subprocess.run(script("mqtt_publisher.py", broker, "--topic", "image/new/profile", "--message",
                                        "new profile picture"), capture_output=True, text=True, timeout=TIMEOUT)
            assert out.returncode == 0, out.stderr
            broker.publish("amq.topic", "video.new", b"not an image")
            broker.publish("amq.topic", "image.old.cover", b"from AMQP")
            assert lines.next() == "image/new/profile qos=0 new profile picture"
            assert lines.next() == "image/old/cover qos=0 from AMQP"
            assert proc.wait(TIMEOUT) == 0
        finally:
            proc.kill()
            proc.wait()
        # A clean session: the subscription queue went with the connection.
        eventually(lambda: "mqtt-subscription-facebookqos0" not in broker.queues)


def test_subscriber_with_several_filters_as_in_the_chapter():
    with fakebroker.start() as broker:
        procs = {
            topic: subprocess.Popen(script("mqtt_subscriber.py", broker, "--client-id", f"sub-{i}", "--topic",
                                           topic, "--count", "1"),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i, topic in enumerate(["image/#", "image/new/+", "image/new/profile"])
        }
        try:
            readers = {topic: Lines(proc) for topic, proc in procs.items()}
            for topic, reader in readers.items():
                assert reader.next() == f"subscribed {topic} granted=[0]"
            out = subprocess.run(script("mqtt_publisher.py", broker, "--topic", "image/new/profile"),
                                 capture_output=True, text=True, timeout=TIMEOUT)
            assert out.returncode == 0, out.stderr
            for reader in readers.values():
                assert reader.next() == "image/new/profile qos=0 hello world from MQTT via Python"
            for proc in procs.values():
                assert proc.wait(TIMEOUT) == 0
        finally:
            for proc in procs.values():
                proc.kill()
                proc.wait()


def stomp_script(name: str, broker: fakebroker.ThreadedBroker, *args: str) -> list[str]:
    host, port = broker.stomp
    return [sys.executable, str(EXAMPLES / name), "--host", host, "--port", str(port), *args]


def test_stomp_publisher_declares_the_book_queue():
    with fakebroker.start() as broker:
        out = subprocess.run(stomp_script("stomp_publisher.py", broker), capture_output=True, text=True,
                             timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "published to /queue/stomp-messages: Example Message\n"
        q = broker.queues["stomp-messages"]
        assert (q.durable, q.auto_delete, q.messages) == (True, False, 1)
        message = broker.get("stomp-messages")
        assert message.body == b"Example Message"
        assert message.properties["app_id"] == "rabbitmq-in-depth"


def test_stomp_publisher_to_a_missing_exchange_fails():
    with fakebroker.start() as broker:
        out = subprocess.run(stomp_script("stomp_publisher.py", broker, "--destination", "/exchange/stomp-routing/x"),
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 1
        assert "not_found" in out.stderr


def test_stomp_consumer_gets_what_the_publisher_sent():
    with fakebroker.start() as broker:
        consumer = subprocess.Popen(stomp_script("stomp_consumer.py", broker, "--count", "2"),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lines = Lines(consumer)
            assert lines.next() == "subscribed to /queue/stomp-messages"
            eventually(lambda: broker.queues.get("stomp-messages") is not None
                       and broker.queues["stomp-messages"].consumers == 1)
            out = subprocess.run(stomp_script("stomp_publisher.py", broker, "--count", "2"), capture_output=True,
                                 text=True, timeout=TIMEOUT)
            assert out.returncode == 0, out.stderr
            expected = "/queue/stomp-messages: Example Message (app-id=rabbitmq-in-depth, redelivered=false)"
            assert [lines.next(), lines.next()] == [expected, expected]
            assert consumer.wait(TIMEOUT) == 0
        finally:
            if consumer.poll() is None:
                consumer.kill()
            consumer.wait()
        eventually(lambda: broker.queues["stomp-messages"].unacked == 0)
        assert broker.queues["stomp-messages"].messages == 0


# -- AMQP (rabbitpy) and statelessd (HTTP) examples -------------------------------------------------------
def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    return out


def test_rabbitpy_setup_then_mqtt_publish_then_rabbitpy_get() -> None:
    pytest.importorskip("rabbitpy", reason="rabbitpy 3 needs Python 3.11")
    with fakebroker.start() as broker:
        out = run_example(str(EXAMPLES / "amqp_setup.py"), "--url", broker.amqp_url)
        assert out.stdout == "declared mqtt-messages, bound to amq.topic with #\n"
        q = broker.queues["mqtt-messages"]
        assert (q.durable, q.auto_delete, q.exclusive) == (False, False, False)
        assert [(b.source, b.routing_key) for b in broker.bindings if b.destination == "mqtt-messages"
                and b.source] == [("amq.topic", "#")]
        assert run_example(str(EXAMPLES / "amqp_get.py"), "--url", broker.amqp_url).stdout == "empty\n"
        host, port = broker.mqtt
        run_example(str(EXAMPLES / "mqtt_publisher.py"), "--host", host, "--port", str(port))
        out = run_example(str(EXAMPLES / "amqp_get.py"), "--url", broker.amqp_url)
        assert out.stdout == ("mqtt.example {'x-mqtt-dup': False, 'x-mqtt-publish-qos': 1} "
                              "hello world from MQTT via Python\n")
        assert broker.queues["mqtt-messages"].messages == 0


def test_the_chapter_example_publishes_into_the_queue_the_management_api_shows() -> None:
    with fakebroker.start() as broker:
        broker.declare_queue("statelessd-messages")
        broker.bind("statelessd-messages", "amq.topic", "#")
        out = subprocess.run([sys.executable, str(EXAMPLES / "statelessd_publisher.py"), "--url", broker.http_url,
                              "--count", "3"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert "published 3 message(s)" in out.stdout
        queue = requests.get(f"{broker.management_url}/api/queues/%2F/statelessd-messages",
                             auth=("guest", "guest"), timeout=TIMEOUT).json()
        assert queue["messages"] == 3
        got = requests.post(f"{broker.management_url}/api/queues/%2F/statelessd-messages/get",
                            json={"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
                            auth=("guest", "guest"), timeout=TIMEOUT).json()
        assert got[0]["payload"] == "message 0 via statelessd"
        assert got[0]["properties"]["app_id"] == "statelessd-example"
