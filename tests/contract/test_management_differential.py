"""Differential state machine for the management HTTP API: random sequences of requests run in lockstep on
fakebroker's management listener and on the real RabbitMQ's, and every answer must be the same (status code and
body, the test's vhost name normalised), as fakeredis's hypothesis machines compare the fake with a real Redis.

The steps: PUT a queue (durable or not, with or without a length limit) or an exchange (fanout or topic), DELETE
either (queues with if-empty), bind a queue to an exchange or to ``amq.topic`` and delete bindings by the key the
listing gives, publish to an exchange or through the default exchange, get with each ackmode, purge, and read the
listings of queues (names and flags), exchanges and bindings. Every answer the API gives synchronously is compared;
statistics (message counts in listings) are not, as they lag on RabbitMQ.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from contractlib import Backend, FakeBackend, RabbitBackend
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from managementlib import api, q

QUEUES = ("q0", "q1", "q2")
EXCHANGES = ("x1", "x2")
KEYS = ("a", "a.b", "b.c", "q0", "q1")
PATTERNS = ("a", "a.*", "#", "*.c")
ARGUMENTS = ({}, {"x-max-length": 1}, {"x-max-length": 2, "x-overflow": "reject-publish"},
             {"x-message-ttl": 60000}, {"x-dead-letter-exchange": "x1"})


class Side:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        r = api(self.backend, method, path, body)
        text = r.text.replace(self.backend.vhost, "VHOST")
        try:
            value: Any = __import__("json").loads(text) if text.strip() else None
        except ValueError:
            value = text
        return r.status_code, value


class ManagementDifferential(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sides = [Side(FakeBackend()), Side(RabbitBackend())]
        self.n = 0

    def _same(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        outcomes = [side.call(method, path, body) for side in self.sides]
        assert outcomes[0] == outcomes[1], (f"{method} {path} {body!r}\nfakebroker: {outcomes[0]!r}\n"
                                            f"RabbitMQ:   {outcomes[1]!r}")
        return outcomes[0]

    @rule(queue=st.sampled_from(QUEUES), durable=st.booleans(), arguments=st.sampled_from(ARGUMENTS))
    def put_queue(self, queue: str, durable: bool, arguments: dict[str, Any]) -> None:
        self._same("PUT", f"/api/queues/{{vhost}}/{queue}", {"durable": durable, "arguments": arguments})

    @rule(queue=st.sampled_from(QUEUES), if_empty=st.booleans())
    def delete_queue(self, queue: str, if_empty: bool) -> None:
        self._same("DELETE", f"/api/queues/{{vhost}}/{queue}" + ("?if-empty=true" if if_empty else ""))

    @rule(exchange=st.sampled_from(EXCHANGES), kind=st.sampled_from(("fanout", "topic")), durable=st.booleans())
    def put_exchange(self, exchange: str, kind: str, durable: bool) -> None:
        self._same("PUT", f"/api/exchanges/{{vhost}}/{exchange}", {"type": kind, "durable": durable})

    @rule(exchange=st.sampled_from(EXCHANGES), if_unused=st.booleans())
    def delete_exchange(self, exchange: str, if_unused: bool) -> None:
        self._same("DELETE", f"/api/exchanges/{{vhost}}/{exchange}" + ("?if-unused=true" if if_unused else ""))

    @rule(queue=st.sampled_from(QUEUES), exchange=st.sampled_from((*EXCHANGES, "amq.topic")),
          pattern=st.sampled_from(PATTERNS))
    def bind(self, queue: str, exchange: str, pattern: str) -> None:
        self._same("POST", f"/api/bindings/{{vhost}}/e/{exchange}/q/{queue}", {"routing_key": pattern})

    @rule(queue=st.sampled_from(QUEUES), exchange=st.sampled_from((*EXCHANGES, "amq.topic")),
          which=st.integers(0, 3))
    def unbind(self, queue: str, exchange: str, which: int) -> None:
        status, listed = self._same("GET", f"/api/bindings/{{vhost}}/e/{exchange}/q/{queue}")
        if status == 200 and listed:
            key = listed[which % len(listed)]["properties_key"]
            self._same("DELETE", f"/api/bindings/{{vhost}}/e/{exchange}/q/{queue}/{q(key)}")

    @rule(source=st.sampled_from((*EXCHANGES, "amq.topic")), destination=st.sampled_from(EXCHANGES),
          pattern=st.sampled_from(PATTERNS), unbind=st.booleans())
    def bind_exchange(self, source: str, destination: str, pattern: str, unbind: bool) -> None:
        path = f"/api/bindings/{{vhost}}/e/{source}/e/{destination}"
        if not unbind:
            self._same("POST", path, {"routing_key": pattern})
            return
        status, listed = self._same("GET", path)
        if status == 200 and listed:
            self._same("DELETE", f"{path}/{q(listed[0]['properties_key'])}")

    @rule(exchange=st.sampled_from(("amq.default", "amq.topic", *EXCHANGES)), key=st.sampled_from(KEYS),
          properties=st.sampled_from(({}, {"delivery_mode": 2, "headers": {"n": 1}}, {"expiration": "60000"},
                                      {"priority": 3, "content_type": "text/plain"})))
    def publish(self, exchange: str, key: str, properties: dict[str, Any]) -> None:
        self.n += 1
        self._same("POST", f"/api/exchanges/{{vhost}}/{exchange}/publish",
                   {"routing_key": key, "payload": f"m{self.n}", "payload_encoding": "string",
                    "properties": properties})

    @rule(queue=st.sampled_from(QUEUES), count=st.integers(1, 3),
          ackmode=st.sampled_from(("ack_requeue_false", "ack_requeue_true", "reject_requeue_true",
                                   "reject_requeue_false")), encoding=st.sampled_from(("auto", "base64")))
    def get(self, queue: str, count: int, ackmode: str, encoding: str) -> None:
        self._same("POST", f"/api/queues/{{vhost}}/{queue}/get", {"count": count, "ackmode": ackmode,
                                                                   "encoding": encoding})

    @rule(queue=st.sampled_from(QUEUES))
    def purge(self, queue: str) -> None:
        self._same("DELETE", f"/api/queues/{{vhost}}/{queue}/contents")

    @rule()
    def listings(self) -> None:
        self._same("GET", "/api/queues/{vhost}?columns=name,durable,auto_delete,exclusive,arguments")
        self._same("GET", "/api/exchanges/{vhost}?columns=name,type,durable")
        self._same("GET", "/api/bindings/{vhost}")

    def teardown(self) -> None:
        for side in self.sides:
            side.backend.close()


@pytest.mark.usefixtures("both_backends")
def test_management_api_sequences_answer_alike_on_both_brokers() -> None:
    run_state_machine_as_test(
        ManagementDifferential,
        settings=settings(
            max_examples=int(os.environ.get("MANAGEMENT_DIFFERENTIAL_EXAMPLES", "15")),
            stateful_step_count=25,
            deadline=None,
            database=None,
            phases=(Phase.explicit, Phase.generate),
            suppress_health_check=list(HealthCheck),
        ),
    )
