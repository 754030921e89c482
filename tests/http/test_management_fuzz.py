"""Whatever JSON a client sends, the management API answers with RabbitMQ's statuses, never a 500."""

from __future__ import annotations

import json
from typing import Any

from httptestlib import INFO, Driver, Host, request
from hypothesis import given, settings
from hypothesis import strategies as st

from fakebroker.protocols.http import management_session

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
KEYS = ["durable", "auto_delete", "arguments", "type", "internal", "routing_key", "properties", "payload",
        "payload_encoding", "count", "ackmode", "encoding", "truncate", "description", "tags", "configure"]
BODIES = st.one_of(JSON_VALUES, st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=6))
TARGETS = st.sampled_from([
    ("PUT", "/api/queues/%2F/q"), ("PUT", "/api/exchanges/%2F/x"), ("POST", "/api/bindings/%2F/e/x/q/q"),
    ("POST", "/api/exchanges/%2F/amq.default/publish"), ("POST", "/api/queues/%2F/q/get"),
    ("PUT", "/api/vhosts/v"), ("PUT", "/api/permissions/%2F/guest"), ("DELETE", "/api/queues/%2F/q"),
    ("POST", "/api/exchanges/%2F/x/publish"), ("PUT", "/api/queues/%2F/amq.q"),
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(TARGETS, BODIES), min_size=1, max_size=6))
def test_no_body_makes_a_500(calls: list[tuple[tuple[str, str], Any]]) -> None:
    host = Host()
    driver = Driver(management_session(INFO, host))
    for (method, path), body in calls:
        [reply] = driver.replies(request(method, path, json.dumps(body).encode(), {"Content-Type": "application/json"}))
        assert reply.status in (200, 201, 204, 400, 401, 404), (method, path, body, reply.status, reply.body)
        if reply.status >= 400:
            error = json.loads(reply.body)
            assert set(error) == {"error", "reason"}
