"""Differential state machine: random AMQP 0-9-1 sessions run in lockstep on fakebroker and on the real
RabbitMQ, and every step must have the same outcome on both (as fakeredis's hypothesis machines compare the
fake with a real Redis).

The steps, on one pika channel per broker in confirm mode, and one MQTT client: declare a queue (durable or not;
plain, length-limited dropping the head or refusing publishes, or dead-lettering to q0), delete it (if-empty),
declare an exchange (fanout or topic, with or without an alternate exchange) or delete it, bind or unbind a queue
or an exchange to an exchange with a pattern, publish over AMQP (to the default exchange, ``amq.topic`` or one
of ours, mandatory or not) or over MQTT at QoS 1, take the head with basic.get and settle it (ack, reject with
requeue, nack without requeue, no-ack, or keep it), purge, and recover. Each step's outcome is compared at once:
declare-ok and purge-ok counts, what basic.get returned (body, redelivered flag, messages left, exchange,
routing key, delivery mode, headers), a return or a nack, or the channel error's code and text (the vhost name
normalised). After a channel error both sides open a new channel. Publishes end once the broker has enqueued
the message (the AMQP confirm, the MQTT PUBACK): RabbitMQ's queue process answers a declare's message count
before casts still in its mailbox (``stat`` is a prioritised call), so without them the count after a publish
is a race there.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from amqpkit import connect
from contractlib import Backend, FakeBackend, RabbitBackend
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test
from pika.exceptions import ChannelClosedByBroker, NackError, UnroutableError

QUEUES = ("q0", "q1", "q2")
EXCHANGES = ("x1", "x2")
#: Queue arguments a declare step picks from: none, a length limit (dropping the head or refusing publishes),
#: dead-lettering to q0 through the default exchange.
ARGUMENTS = (None, {"x-max-length": 2}, {"x-max-length": 1, "x-overflow": "reject-publish"},
             {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "q0"})
KEYS = ("a", "a.b", "b.c", "a.b.c")
PATTERNS = ("a", "a.*", "#", "*.c", "a.#")


class Side:
    """One broker's half: its backend and a channel, reopened after a channel error."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.conn = connect(backend)
        self.ch = self._channel()
        self.mqtt = backend.raw()
        self.mqtt.connect()

    def _channel(self) -> Any:
        ch = self.conn.channel()
        ch.confirm_delivery()
        return ch

    def do(self, action: Any) -> Any:
        try:
            return ("ok", action(self.ch))
        except UnroutableError:
            return ("returned",)
        except NackError:
            return ("nacked",)
        except ChannelClosedByBroker as exc:
            self.ch = self._channel()
            return ("error", exc.reply_code, exc.reply_text.replace(self.backend.vhost, "VHOST"))


def _get(ch: Any, queue: str, settle: str) -> Any:
    method, props, body = ch.basic_get(queue, auto_ack=settle == "no-ack")
    if method is None:
        return None
    seen = (body, method.redelivered, method.message_count, method.exchange, method.routing_key,
            props.delivery_mode, dict(props.headers or {}))
    if settle == "ack":
        ch.basic_ack(method.delivery_tag)
    elif settle == "requeue":
        ch.basic_reject(method.delivery_tag, requeue=True)
    elif settle == "drop":
        ch.basic_nack(method.delivery_tag, requeue=False)
    return seen


class AmqpDifferential(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sides = [Side(FakeBackend()), Side(RabbitBackend())]
        self.n = 0
        # A QoS 1 MQTT publish that a reject-publish queue refuses closes the MQTT connection (RabbitMQ 3.10's
        # dies of the nack; fakebroker's closes the same way): once such a queue may exist, MQTT publishes stop.
        self.refusing_queue = False

    def _same(self, action: Any) -> None:
        outcomes = [side.do(action) for side in self.sides]
        assert outcomes[0] == outcomes[1], f"fakebroker: {outcomes[0]!r}\nRabbitMQ:   {outcomes[1]!r}"

    @rule(queue=st.sampled_from(QUEUES), durable=st.booleans(), args=st.sampled_from(ARGUMENTS),
          passive=st.sampled_from([False, False, True]))
    def declare(self, queue: str, durable: bool, args: dict[str, Any] | None, passive: bool) -> None:
        self.refusing_queue = self.refusing_queue or (args or {}).get("x-overflow") == "reject-publish"

        def run(ch: Any) -> Any:
            ok = ch.queue_declare(queue, passive=passive, durable=durable, arguments=args).method
            return (ok.queue, ok.message_count, ok.consumer_count)

        self._same(run)

    @rule(queue=st.sampled_from(QUEUES), if_empty=st.booleans())
    def delete(self, queue: str, if_empty: bool) -> None:
        self._same(lambda ch: ch.queue_delete(queue, if_empty=if_empty).method.message_count)

    @rule(queue=st.sampled_from(QUEUES), pattern=st.sampled_from(PATTERNS), unbind=st.booleans())
    def bind(self, queue: str, pattern: str, unbind: bool) -> None:
        if unbind:
            self._same(lambda ch: ch.queue_unbind(queue, "amq.topic", pattern) and None)
        else:
            self._same(lambda ch: ch.queue_bind(queue, "amq.topic", pattern) and None)

    @rule(key=st.sampled_from(KEYS + QUEUES), exchange=st.sampled_from(("", "amq.topic", *EXCHANGES)),
          mandatory=st.booleans())
    def publish(self, key: str, exchange: str, mandatory: bool) -> None:
        self.n += 1
        body = b"m%d" % self.n
        self._same(lambda ch: ch.basic_publish(exchange, key, body, mandatory=mandatory))

    @precondition(lambda self: not self.refusing_queue)
    @rule(topic=st.sampled_from(("a", "a/b", "b/c", "a/b/c", "q0")))
    def mqtt_publish(self, topic: str) -> None:
        """A device publishes at QoS 1: the PUBACK comes once the message is enqueued, on both brokers."""
        self.n += 1
        body = b"m%d" % self.n
        for side in self.sides:
            side.mqtt.publish(topic, body, 1)

    @rule(exchange=st.sampled_from(EXCHANGES), kind=st.sampled_from(("fanout", "topic")),
          alternate=st.sampled_from((None, "x1", "x2")))
    def declare_exchange(self, exchange: str, kind: str, alternate: str | None) -> None:
        args = {"alternate-exchange": alternate} if alternate else None
        self._same(lambda ch: ch.exchange_declare(exchange, kind, arguments=args) and None)

    @rule(exchange=st.sampled_from(EXCHANGES))
    def delete_exchange(self, exchange: str) -> None:
        self._same(lambda ch: ch.exchange_delete(exchange) and None)

    @rule(destination=st.sampled_from(EXCHANGES + QUEUES), source=st.sampled_from(EXCHANGES + ("amq.topic",)),
          pattern=st.sampled_from(PATTERNS), unbind=st.booleans())
    def bind_to(self, destination: str, source: str, pattern: str, unbind: bool) -> None:
        if destination in QUEUES:
            call = "queue_unbind" if unbind else "queue_bind"
        else:
            call = "exchange_unbind" if unbind else "exchange_bind"
        self._same(lambda ch: getattr(ch, call)(destination, source, pattern) and None)

    @rule(queue=st.sampled_from(QUEUES), settle=st.sampled_from(["ack", "requeue", "drop", "no-ack", "keep"]))
    def get(self, queue: str, settle: str) -> None:
        self._same(lambda ch: _get(ch, queue, settle))

    @rule(queue=st.sampled_from(QUEUES))
    def purge(self, queue: str) -> None:
        self._same(lambda ch: ch.queue_purge(queue).method.message_count)

    @rule()
    def recover(self) -> None:
        self._same(lambda ch: ch.basic_recover(requeue=True) and None)

    def teardown(self) -> None:
        for side in self.sides:
            side.backend.close()


@pytest.mark.usefixtures("both_backends")
def test_amqp_sessions_have_the_same_outcomes_on_both_brokers() -> None:
    run_state_machine_as_test(
        AmqpDifferential,
        settings=settings(
            max_examples=int(os.environ.get("AMQP_DIFFERENTIAL_EXAMPLES", "25")),
            stateful_step_count=30,
            deadline=None,
            database=None,
            phases=(Phase.explicit, Phase.generate),
            suppress_health_check=list(HealthCheck),
        ),
    )
