"""Deep and pathological topics and filters through real sockets: matching stays bounded and iterative, so a
publish neither freezes the broker (quadratic matching under nested '#') nor fails (recursion deeper than
Python allows). RabbitMQ 3.10.8 grants a 30,000-level filter and routes a matching publish to it."""

from __future__ import annotations

import threading
import time

import pytest
from wire import Puback, Publish

from fakebroker import ThreadedBroker

LONG_TOPIC = "/".join(["a"] * 32_767 + ["x"])  # 65,535 bytes: the longest topic MQTT can frame


@pytest.mark.parametrize("topic_filter", ["#/#/x", "#/#/#/x", "#/" + "/".join(["+"] * 400) + "/x"])
def test_nested_wildcards_against_a_long_topic_do_not_freeze_the_broker(raw, bystander, topic_filter):
    sub = raw()
    sub.connect()
    sub.subscribe(topic_filter, 1)
    pub = raw()
    pub.connect()
    start = time.monotonic()
    pub.send(Publish(LONG_TOPIC, b"deep", 1, packet_id=7))
    assert pub.recv(timeout=10) == Puback(7)
    assert time.monotonic() - start < 5  # was 74.7 s for "#/#/x", the whole broker frozen meanwhile
    got = sub.recv(timeout=10)
    assert isinstance(got, Publish) and got.topic == LONG_TOPIC and got.payload == b"deep"
    bystander.check()


def test_bystander_keeps_its_latency_while_long_topics_are_matched(raw, bystander):
    sub = raw()
    sub.connect()
    sub.subscribe("#/#/#/x", 0)
    pub = raw()
    pub.connect()
    stop = threading.Event()

    def flood() -> None:
        pid = 0
        while not stop.is_set():
            pid = pid % 0xFFFE + 1
            pub.send(Publish(LONG_TOPIC, b"", 1, packet_id=pid))
            pub.recv(timeout=10)

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        worst = max(bystander.check(timeout=10) for _ in range(20))
    finally:
        stop.set()
        t.join(15)
    assert worst < 2.0


@pytest.mark.parametrize("levels", [990, 5_000, 30_000])
@pytest.mark.parametrize("word", ["a", "+"])
def test_deep_filter_is_granted_and_matched(raw, broker: ThreadedBroker, bystander, levels, word):
    # RabbitMQ 3.10.8 grants these and delivers a matching publish (probed at 990, 5,000 and 30,000 levels).
    topic = "/".join(["deep"] + ["a"] * (levels - 1))
    topic_filter = "/".join(["deep"] + [word] * (levels - 1))
    sub = raw()
    sub.connect()
    assert sub.subscribe(topic_filter, 1).return_codes == [1]
    pub = raw()
    pub.connect()
    pub.send(Publish(topic, b"m", 1, packet_id=1))
    assert pub.recv(timeout=10) == Puback(1)  # the publisher was closed by a RecursionError at 990 levels
    got = sub.recv(timeout=10)
    assert isinstance(got, Publish) and got.topic == topic
    broker.publish("amq.topic", topic.replace("/", "."), b"api")  # raised RecursionError too
    got = sub.recv(timeout=10)
    assert isinstance(got, Publish) and got.payload == b"api"
    bystander.check()
