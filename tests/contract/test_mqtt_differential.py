"""Differential state machine: random MQTT client sessions, and STOMP clients beside them, run in lockstep on
fakebroker and on the real RabbitMQ, and every client must receive the same messages from both (as fakeredis's
hypothesis machines compare the fake with a real Redis).

STOMP clients (stomp.py 1.2, always connected) subscribe to and unsubscribe from ``/topic/`` destinations made
from the same filters (``a/+`` is ``/topic/a.*``) and SEND to the same topics, so messages cross between the
protocols both ways; a STOMP client's received messages are compared as (destination, body). An AMQP 0-9-1
backend (pika) consumes a queue bound to ``amq.topic`` with ``#`` and now and then publishes to ``amq.topic``
with a confirm; what it got is compared as (routing key, body, the MQTT plugin's QoS header or -1, persistent).

The steps: a client id connects (clean or persistent session, with or without a will), takes a live
connection over, subscribes or unsubscribes (QoS 0/1, filters with wildcards), publishes (QoS 0/1, sometimes
retained), disconnects (DISCONNECT, or a dropped TCP connection) or lets time pass while persistent sessions
are offline (up to past their expiry); an observer subscribed to ``#`` sees every
message. Each step runs on both brokers, then waits until the deliveries it caused have arrived (the fake's first,
then the real node's, up to the same counts, then a short quiet period) and compares, per client id, the
multiset of (topic, payload, QoS, retain) received so far, plus every CONNACK and SUBACK. Order is not
compared: one client's messages come from up to two queues (one per QoS level), and RabbitMQ does not order
deliveries across queues.

Time: the fake's virtual clock is moved to the wall-clock time elapsed since the example started, before each
step, so persistent sessions expire (subscription_ttl 5 s) on both. A step is never run while an offline
session is within reach of its expiry on one broker but not the other: the machine waits that window out.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import amqpkit
import pika
import pytest
import stomp
from contractlib import SUBSCRIPTION_TTL_MS, Backend, FakeBackend, PahoClient, RabbitBackend
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

CLIENTS = ("c0", "c1", "c2")
STOMP_CLIENTS = ("s0", "s1")
OBSERVER = "observer"
AMQP = "amqp"  # the AMQP consumer's label
TOPICS = ("a", "a/b", "a/c", "b/x", "a/b/c", "w/c0")
FILTERS = ("a", "a/+", "a/#", "#", "+/x", "a/b", "+/+", "w/#")
EXPIRY = SUBSCRIPTION_TTL_MS / 1000
#: Offline sessions whose age is in [EXPIRY - MARGIN, EXPIRY + MARGIN + step duration) are waited out.
MARGIN = 0.5
FAKE_QUIET = 0.05
REAL_QUIET = 0.15
CATCH_UP = 2.0


def to_key(topic: str) -> str:
    """An MQTT topic or filter as the routing or binding key RabbitMQ maps it to."""
    return topic.replace("/", ".").replace("+", "*")


@dataclass(frozen=True)
class StompReceived:
    """A MESSAGE as a STOMP client got it, keyed like an MQTT delivery for the comparison."""

    destination: str
    body: bytes

    @property
    def key(self) -> tuple[str, bytes, int, bool]:
        return (self.destination, self.body, -1, False)


class StompSide(stomp.ConnectionListener):  # type: ignore[misc]
    """A stomp.py client logged into the backend's vhost, collecting MESSAGEs; SUBSCRIBE waits for its receipt."""

    def __init__(self, backend: Backend, sink: list[Any]) -> None:
        self.sink = sink
        self.receipts: queue.Queue[str] = queue.Queue()
        self.lock = threading.Lock()
        host, port = backend.stomp
        self.conn = stomp.Connection12([(host, port)], vhost=backend.vhost)
        self.conn.set_listener("differential", self)
        self.conn.connect("guest", "guest", wait=True)

    def on_message(self, frame: Any) -> None:
        body = frame.body if isinstance(frame.body, bytes) else frame.body.encode()
        self.sink.append(StompReceived(frame.headers["destination"], body))

    def on_receipt(self, frame: Any) -> None:
        self.receipts.put(frame.headers["receipt-id"])

    def call(self, send: Callable[[str], None], receipt: str) -> None:
        send(receipt)
        got = self.receipts.get(timeout=5)
        assert got == receipt, (got, receipt)

    def close(self) -> None:
        if self.conn.is_connected():
            self.conn.disconnect()


@dataclass(frozen=True)
class AmqpReceived:
    """A delivery as the AMQP consumer got it, keyed like an MQTT delivery for the comparison."""

    routing_key: str
    body: bytes
    qos: int  # the x-mqtt-publish-qos header, -1 without one
    persistent: bool

    @property
    def key(self) -> tuple[str, bytes, int, bool]:
        return (self.routing_key, self.body, self.qos, self.persistent)


class AmqpTap:
    """An AMQP 0-9-1 consumer (pika, in its own thread) of a queue bound to amq.topic with "#"."""

    def __init__(self, backend: Backend, sink: list[Any]) -> None:
        self.sink = sink
        self.stopped = threading.Event()
        self.conn = amqpkit.connect(backend)
        ch = self.conn.channel()
        queue_name = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue_name, "amq.topic", "#")
        ch.basic_consume(queue_name, self._on_message, auto_ack=True)
        # From here on only the thread touches the connection, until close() has joined it.
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_message(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        qos = (props.headers or {}).get("x-mqtt-publish-qos", -1)
        self.sink.append(AmqpReceived(method.routing_key, body, qos if isinstance(qos, int) else -1,
                                      props.delivery_mode == 2))

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.conn.process_data_events(time_limit=0.02)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)


class Side:
    """One broker's half of the machine: its backend, its live clients, what each client id received."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.clients: dict[str, PahoClient] = {}
        self.received: dict[str, list[Any]] = {label: [] for label in (*CLIENTS, *STOMP_CLIENTS, OBSERVER, AMQP)}
        self.stomp = {label: StompSide(backend, self.received[label]) for label in STOMP_CLIENTS}
        # The observer sees every message routed on amq.topic (wills and retained publishes included), at the
        # QoS it was published with; the random clients come and go around it.
        observer = backend.paho(OBSERVER, sink=self.received[OBSERVER])
        assert observer.connect() == (False, 0)
        assert observer.subscribe("#", 1) == [1]
        # An AMQP backend beside them: it consumes every routed message, and publishes now and then.
        backend._owned.append(AmqpTap(backend, self.received[AMQP]))
        self.amqp = amqpkit.connect(backend).channel()
        self.amqp.confirm_delivery()

    def counts(self) -> dict[str, int]:
        return {label: len(msgs) for label, msgs in self.received.items()}

    def observed(self) -> dict[str, Counter[tuple[str, bytes, int, bool]]]:
        return {label: Counter(m.key for m in list(msgs)) for label, msgs in self.received.items()}


def _stable(read: Callable[[], dict[str, int]], quiet: float, limit: float) -> dict[str, int]:
    """Wait until ``read()`` has not changed for ``quiet`` seconds (at most ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    last = read()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.01)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


class MqttDifferential(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        fake = FakeBackend()
        try:
            self.fake = Side(fake)
            self.real = Side(RabbitBackend())
        except BaseException:
            fake.close()
            raise
        self.sides = (self.fake, self.real)
        self.t0 = time.monotonic()
        self.connected: dict[str, bool] = dict.fromkeys(CLIENTS, False)
        self.clean: dict[str, bool] = dict.fromkeys(CLIENTS, True)
        self.has_q1: dict[str, bool] = dict.fromkeys(CLIENTS, False)  # the session has a QoS 1 queue
        # label -> (wall time at the start of the step that disconnected it, at its end), for offline sessions
        # with a QoS 1 queue (the ones that can expire)
        self.offline: dict[str, tuple[float, float]] = {}
        self.n = 0
        self.paused = False
        self.stomp_subscriptions: dict[str, set[str]] = {label: set() for label in STOMP_CLIENTS}

    # -- time -----------------------------------------------------------------------------------------
    def _sync_clock(self) -> None:
        """Keep offline sessions out of their expiry window, then move the fake clock to the wall clock."""
        for label, (start, end) in list(self.offline.items()):
            age = time.monotonic() - start
            if age >= EXPIRY - MARGIN and time.monotonic() - end < EXPIRY + MARGIN:
                time.sleep(EXPIRY + MARGIN - (time.monotonic() - end))
            if time.monotonic() - end >= EXPIRY + MARGIN:
                del self.offline[label]  # expired on both
        fake = self.fake.backend
        assert isinstance(fake, FakeBackend)
        behind = (time.monotonic() - self.t0) - fake.broker.clock.now()
        if behind > 0:
            fake.advance(behind)

    # -- comparing --------------------------------------------------------------------------------------
    def _settle_and_compare(self) -> None:
        fake = self.fake.backend
        assert isinstance(fake, FakeBackend)
        fake.broker.clock.advance(0)  # everything the fake has to send is written out
        target = _stable(self.fake.counts, FAKE_QUIET, CATCH_UP)
        deadline = time.monotonic() + CATCH_UP
        while time.monotonic() < deadline:
            counts = self.real.counts()
            if all(counts[label] >= target[label] for label in target):
                break
            time.sleep(0.01)
        _stable(self.real.counts, REAL_QUIET, CATCH_UP)
        fake_seen, real_seen = self.fake.observed(), self.real.observed()
        if fake_seen != real_seen:
            lines = []
            for label in (*CLIENTS, *STOMP_CLIENTS, OBSERVER, AMQP):
                only_fake = fake_seen[label] - real_seen[label]
                only_real = real_seen[label] - fake_seen[label]
                if only_fake or only_real:
                    lines.append(f"  {label}: only on fake {sorted(only_fake.elements())}, "
                                 f"only on rabbitmq {sorted(only_real.elements())}")
            raise AssertionError("clients received different messages (topic, payload, qos, retain):\n"
                                 + "\n".join(lines))

    # -- rules ----------------------------------------------------------------------------------------------
    @precondition(lambda self: not all(self.connected.values()))
    @rule(data=st.data(), clean=st.sampled_from([False, False, True]), will=st.booleans())
    def connect(self, data: st.DataObject, clean: bool, will: bool) -> None:
        label = data.draw(st.sampled_from([c for c in CLIENTS if not self.connected[c]]), label="client")
        self._sync_clock()
        self.n += 1
        last_will = (f"w/{label}", b"will %d" % self.n, 1, False) if will else None
        acks = []
        for side in self.sides:
            client = side.backend.paho(label, clean_session=clean, will=last_will, sink=side.received[label])
            side.clients[label] = client
            acks.append(client.connect())
        assert acks[0] == acks[1], f"CONNACK (session_present, rc): fake {acks[0]}, rabbitmq {acks[1]}"
        self.connected[label] = True
        self.clean[label] = clean
        self.has_q1[label] = acks[0][0]  # session present: its QoS 1 queue is there
        self.offline.pop(label, None)
        self._settle_and_compare()  # a resumed session gets its offline messages now

    @precondition(lambda self: any(self.connected.values()))
    @rule(data=st.data(), clean=st.booleans())
    def take_over(self, data: st.DataObject, clean: bool) -> None:
        """A second connection with a connected client's id: the old one is closed, with no will."""
        label = data.draw(st.sampled_from([c for c in CLIENTS if self.connected[c]]), label="client")
        # A persistent session taking over a live clean one is a documented difference (differences.md, "a
        # persistent session resumes from an inequivalent queue"): RabbitMQ kills both connections.
        clean = clean or self.clean[label]
        self._sync_clock()
        acks = []
        for side in self.sides:
            old = side.clients[label]
            new = side.backend.paho(label, clean_session=clean, sink=side.received[label])
            acks.append(new.connect())
            old.dropped()  # RabbitMQ closes the old connection a few ms after the new one's CONNACK
            side.clients[label] = new
        assert acks[0] == acks[1], f"CONNACK (session_present, rc): fake {acks[0]}, rabbitmq {acks[1]}"
        self.clean[label] = clean
        self.has_q1[label] = acks[0][0]
        self._settle_and_compare()

    @precondition(lambda self: any(self.connected.values()))
    @rule(data=st.data(), topic_filter=st.sampled_from(FILTERS), qos=st.sampled_from([0, 1, 1]))
    def subscribe(self, data: st.DataObject, topic_filter: str, qos: int) -> None:
        label = data.draw(st.sampled_from([c for c in CLIENTS if self.connected[c]]), label="client")
        self._sync_clock()
        granted = [side.clients[label].subscribe(topic_filter, qos) for side in self.sides]
        assert granted[0] == granted[1], f"SUBACK: fake {granted[0]}, rabbitmq {granted[1]}"
        self.has_q1[label] = self.has_q1[label] or qos == 1
        self._settle_and_compare()  # retained messages

    @precondition(lambda self: any(self.connected.values()))
    @rule(data=st.data(), topic_filter=st.sampled_from(FILTERS))
    def unsubscribe(self, data: st.DataObject, topic_filter: str) -> None:
        label = data.draw(st.sampled_from([c for c in CLIENTS if self.connected[c]]), label="client")
        self._sync_clock()
        for side in self.sides:
            side.clients[label].unsubscribe(topic_filter)

    @precondition(lambda self: any(self.connected.values()))
    @rule(data=st.data(), topic=st.sampled_from(TOPICS), qos=st.integers(0, 1),
          retain=st.sampled_from([False, False, False, True]))
    def publish(self, data: st.DataObject, topic: str, qos: int, retain: bool) -> None:
        label = data.draw(st.sampled_from([c for c in CLIENTS if self.connected[c]]), label="client")
        self._sync_clock()
        self.n += 1
        payload = b"m%d" % self.n
        for side in self.sides:
            side.clients[label].publish(topic, payload, qos, retain)
        self._settle_and_compare()

    @rule(topic=st.sampled_from(TOPICS), persistent=st.booleans())
    def amqp_publish(self, topic: str, persistent: bool) -> None:
        """The AMQP backend publishes to amq.topic (MQTT topic a/b is routing key a.b), with a confirm."""
        self._sync_clock()
        self.n += 1
        payload = b"a%d" % self.n
        props = pika.BasicProperties(delivery_mode=2 if persistent else 1)
        for side in self.sides:
            side.amqp.basic_publish("amq.topic", to_key(topic), payload, props)
        self._settle_and_compare()

    @precondition(lambda self: any(self.connected.values()))
    @rule(data=st.data(), abrupt=st.booleans())
    def disconnect(self, data: st.DataObject, abrupt: bool) -> None:
        label = data.draw(st.sampled_from([c for c in CLIENTS if self.connected[c]]), label="client")
        self._sync_clock()
        start = time.monotonic()
        for side in self.sides:
            client = side.clients.pop(label)
            if abrupt:
                side.backend.disconnect(client.client_id)  # the will, if any, is published
            else:
                client.disconnect()
        self.connected[label] = False
        if not self.clean[label] and self.has_q1[label]:
            self.offline[label] = (start, time.monotonic())
        self._settle_and_compare()

    @rule(label=st.sampled_from(STOMP_CLIENTS), topic_filter=st.sampled_from(FILTERS))
    def stomp_subscribe(self, label: str, topic_filter: str) -> None:
        """SUBSCRIBE (or, when already subscribed, UNSUBSCRIBE) a STOMP client to the filter as a /topic."""
        self._sync_clock()
        self.n += 1
        receipt = f"r{self.n}"
        subscribed = topic_filter in self.stomp_subscriptions[label]
        for side in self.sides:
            conn = side.stomp[label].conn
            if subscribed:
                side.stomp[label].call(lambda r, c=conn: c.unsubscribe(id=topic_filter, headers={"receipt": r}),
                                       receipt)
            else:
                side.stomp[label].call(lambda r, c=conn: c.subscribe(f"/topic/{to_key(topic_filter)}",
                                                                     id=topic_filter, headers={"receipt": r}),
                                       receipt)
        self.stomp_subscriptions[label] ^= {topic_filter}

    @rule(label=st.sampled_from(STOMP_CLIENTS), topic=st.sampled_from(TOPICS), persistent=st.booleans())
    def stomp_send(self, label: str, topic: str, persistent: bool) -> None:
        self._sync_clock()
        self.n += 1
        payload = f"s{self.n}"
        headers = {"persistent": "true"} if persistent else {}
        for side in self.sides:
            conn = side.stomp[label].conn
            side.stomp[label].call(lambda r, c=conn: c.send(f"/topic/{to_key(topic)}", payload,
                                                            headers={**headers, "receipt": r}), f"r{self.n}")
        self._settle_and_compare()

    @precondition(lambda self: bool(self.offline) and not self.paused)
    @rule()
    def pause(self) -> None:
        """Let the offline persistent sessions expire (subscription_ttl), once per example: it costs real time."""
        self.paused = True
        time.sleep(EXPIRY + MARGIN + 0.5)  # the next step moves the fake's clock by as much

    def teardown(self) -> None:
        for side in self.sides:
            for client in side.stomp.values():
                client.close()
            side.backend.close()


@pytest.mark.usefixtures("both_backends")
def test_mqtt_and_stomp_clients_see_the_same_messages_on_both_brokers() -> None:
    run_state_machine_as_test(
        MqttDifferential,
        settings=settings(
            max_examples=12,
            stateful_step_count=10,
            deadline=None,
            database=None,
            # Shrinking re-runs examples against the real node and takes minutes; the failing sequence of
            # steps (at most 10) is printed unshrunk instead.
            phases=(Phase.explicit, Phase.generate),
            suppress_health_check=list(HealthCheck),
        ),
    )
