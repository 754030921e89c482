"""statelessd without sockets: every status, the deny state on the broker clock, form decoding, /stats."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from httptestlib import INFO, Driver, Host, Reply, request
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fakebroker.protocols.http import statelessd_session
from fakebroker.protocols.http.statelessd import MAX_ATTEMPTS, RECONNECT_DELAY, StatelessdState

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CHARS = st.characters(blacklist_categories=("Cs",))  # encodable as UTF-8


class Client:
    """One keep-alive connection to statelessd on ``host``."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.driver = Driver(statelessd_session(INFO, host))

    def post(self, path: str, fields: dict[str, Any] | str | None = None, *, auth: tuple[str, str] | None =
             ("guest", "guest"), headers: dict[str, str] | None = None, method: str = "POST") -> Reply:
        body = fields if isinstance(fields, str) else urlencode(fields or {})
        [reply] = self.driver.replies(request(method, path, body.encode(), {**FORM, **(headers or {})}, auth))
        return reply


@pytest.fixture
def queue_host() -> Host:
    """A host with queue ``q`` bound to amq.topic with ``#``."""
    h = Host(users={"guest": "guest", "app": "pw:with:colons", "bob": {"password": "b", "vhosts": ["/"]}},
             vhosts=("/", "other"))
    vh = h.model.vhost("/")
    vh.declare_queue("q")
    vh.bind("q", "amq.topic", "#")
    return h


def bodies(h: Host, queue: str = "q", vhost: str = "/") -> list[bytes]:
    return [m.body for m in h.model.vhost(vhost).queue(queue).peek()]


def test_publish_is_204_and_lands_as_an_amqp_message(queue_host: Host) -> None:
    r = Client(queue_host).post("/%2F/amq.topic/a.b", {"body": "hello", "content_type": "text/plain",
                                                         "delivery_mode": "2", "app_id": "shop"})
    assert r.status == 204 and r.body == b""
    [m] = queue_host.model.vhost("/").queue("q").peek()
    assert (m.exchange, m.routing_key, m.body) == ("amq.topic", "a.b", b"hello")
    assert m.properties == {"content_type": "text/plain", "delivery_mode": 2, "app_id": "shop"}
    [logged] = queue_host.model.log
    assert logged.protocol == "http"


def test_every_property_field_maps_to_its_amqp_property(queue_host: Host) -> None:
    fields = {"body": "b", "app_id": "a", "content_encoding": "gzip", "content_type": "t", "correlation_id": "c",
              "delivery_mode": "1", "expire": "60000", "headers": '{"h": "v", "n": 1}', "message_id": "m",
              "priority": "5", "reply_to": "r", "timestamp": "1700000000", "type": "ty", "user_id": "guest"}
    assert Client(queue_host).post("/%2F/amq.topic/k", fields).status == 204
    [m] = queue_host.model.vhost("/").queue("q").peek()
    assert m.properties == {"app_id": "a", "content_encoding": "gzip", "content_type": "t", "correlation_id": "c",
                            "delivery_mode": 1, "expiration": "60000", "headers": {"h": "v", "n": 1},
                            "message_id": "m", "priority": 5, "reply_to": "r", "timestamp": 1700000000,
                            "type": "ty", "user_id": "guest"}


def test_query_string_and_form_body_merge_and_the_last_value_wins(queue_host: Host) -> None:
    c = Client(queue_host)
    assert c.post("/%2F/amq.topic/k?body=from-query&type=qt&type=qt2", {"body": "from-form"}).status == 204
    assert c.post("/%2F/amq.topic/k?body=only-query", None).status == 204
    msgs = queue_host.model.vhost("/").queue("q").peek()
    assert [m.body for m in msgs] == [b"from-form", b"only-query"]
    assert msgs[0].properties == {"type": "qt2"}


def test_values_are_stripped_and_control_characters_become_spaces_as_tornado_does(queue_host: Host) -> None:
    assert Client(queue_host).post("/%2F/amq.topic/k", {"body": "  a\x01b\tc \n", "type": "  "}).status == 204
    [m] = queue_host.model.vhost("/").queue("q").peek()
    assert m.body == b"a b\tc"
    assert m.properties == {}  # an empty field is left out


def test_multipart_form_fields_are_read(queue_host: Host) -> None:
    boundary = "XyZ"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\nmultipart body\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"priority\"\r\n\r\n3\r\n--{boundary}--\r\n")
    r = Client(queue_host).post("/%2F/amq.topic/k", body,
                                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status == 204
    [m] = queue_host.model.vhost("/").queue("q").peek()
    assert (m.body, m.properties) == (b"multipart body", {"priority": 3})


def test_a_body_that_is_not_a_form_carries_no_fields(queue_host: Host) -> None:
    r = Client(queue_host).post("/%2F/amq.topic/k", '{"body": "json"}', headers={"Content-Type": "application/json"})
    assert r.status == 204
    assert bodies(queue_host) == [b""]


def test_path_segments_are_url_decoded_each_on_its_own(queue_host: Host) -> None:
    vh = queue_host.model.vhost("other")
    vh.declare_queue("slashy")
    vh.declare_exchange("ex/1", "direct")
    vh.bind("slashy", "ex/1", "a/b+c d")
    assert Client(queue_host).post("/other/ex%2F1/a%2Fb+c%20d", {"body": "x"}).status == 204
    assert bodies(queue_host, "slashy", "other") == [b"x"]


def test_the_dashboard_is_at_the_root(queue_host: Host) -> None:
    [r] = Client(queue_host).driver.replies(request("GET", "/", auth=None))
    assert (r.status, r.headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert b'fetch("/stats"' in r.body


@pytest.mark.parametrize("path", ["/%2F", "/%2F/amq.topic", "/%2F/amq.topic/k/extra", "/%2F//k",
                                  "/%2F/amq.topic/", "//amq.topic/k"])
def test_a_path_that_is_not_three_non_empty_segments_is_404(queue_host: Host, path: str) -> None:
    r = Client(queue_host).post(path, {"body": "x"})
    assert r.status == 404
    assert "/<vhost>/<exchange>/<routing-key>" in r.text


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_another_method_is_405(queue_host: Host, method: str) -> None:
    r = Client(queue_host).post("/%2F/amq.topic/k", {"body": "x"}, method=method)
    assert r.status == 405
    assert r.headers["allow"] == "POST"
    assert bodies(queue_host) == []


@pytest.mark.parametrize("method", ["POST", "HEAD", "DELETE"])
def test_stats_takes_only_get(queue_host: Host, method: str) -> None:
    assert Client(queue_host).post("/stats", method=method).status == 405


@pytest.mark.parametrize("header", [None, "Bearer abc", "Basic !!!notbase64", "Basic " +
                                    base64.b64encode(b"no-colon").decode()])
def test_missing_or_malformed_credentials_are_401_with_the_statelessd_realm(queue_host: Host,
                                                                             header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = Client(queue_host).post("/%2F/amq.topic/k", {"body": "x"}, auth=None, headers=headers)
    assert r.status == 401
    assert r.headers["www-authenticate"] == "Basic realm=statelessd"
    assert "Basic" in r.text


def test_a_password_with_colons_is_everything_after_the_first_one(queue_host: Host) -> None:
    r = Client(queue_host).post("/%2F/amq.topic/k", {"body": "x"}, auth=("app", "pw:with:colons"))
    assert r.status == 204
    assert bodies(queue_host) == [b"x"]


@pytest.mark.parametrize(("field", "value"), [("delivery_mode", "two"), ("priority", "1.5"),
                                              ("timestamp", "-1"), ("priority", "256"), ("delivery_mode", "0x2")])
def test_a_non_integer_or_out_of_range_integer_field_is_400(queue_host: Host, field: str, value: str) -> None:
    r = Client(queue_host).post("/%2F/amq.topic/k", {"body": "x", field: value})
    assert r.status == 400
    assert field in r.text and "integer" in r.text
    assert bodies(queue_host) == []


@pytest.mark.parametrize("value", ["h=v", "[1, 2]", '"text"', "{bad json"])
def test_headers_that_are_not_a_json_object_are_400(queue_host: Host, value: str) -> None:
    r = Client(queue_host).post("/%2F/amq.topic/k", {"body": "x", "headers": value})
    assert r.status == 400
    assert "JSON object" in r.text


@pytest.mark.parametrize("raw", ["/%FF/amq.topic/k", "/%2F/amq.topic/%C3%28"])
def test_invalid_utf8_in_the_path_is_400(queue_host: Host, raw: str) -> None:
    r = Client(queue_host).post(raw, {"body": "x"})
    assert r.status == 400
    assert "UTF-8" in r.text


def test_invalid_utf8_in_a_form_field_is_400(queue_host: Host) -> None:
    r = Client(queue_host).post("/%2F/amq.topic/k", "body=%FF%FE")
    assert r.status == 400
    assert "UTF-8" in r.text


def test_a_body_past_the_limit_is_413() -> None:
    h = Host(http_max_body=100)
    r = Client(h).post("/%2F/amq.topic/k", {"body": "x" * 200})
    assert r.status == 413
    assert "larger than 100 bytes" in r.text


def test_refused_pair_buffers_its_first_request_then_is_denied_until_a_reconnect_succeeds() -> None:
    h = Host(users={"guest": "guest"})
    h.model.vhost("/").declare_queue("q")
    h.model.vhost("/").bind("q", "amq.direct", "q")
    c = Client(h)
    # Wrong password: the first request is buffered (204); the connection attempt fails behind it.
    assert c.post("/%2F/amq.direct/q", {"body": "first"}, auth=("guest", "wrong")).status == 204
    denied = c.post("/%2F/amq.direct/q", {"body": "second"}, auth=("guest", "wrong"))
    assert denied.status == 424
    assert "denied" in denied.text
    # The pair keeps the first request's password: the right one changes nothing now.
    assert c.post("/%2F/amq.direct/q", {"body": "third"}, auth=("guest", "guest")).status == 424
    stats = h.state(StatelessdState).publishers["/:guest"].stats()
    assert stats["connected"] is None and stats["queue_size"] == 1
    # The broker starts accepting that password; the next reconnect (5 s later) succeeds and flushes the buffer.
    h.clock.advance(RECONNECT_DELAY - 0.01)
    assert c.post("/%2F/amq.direct/q", {"body": "x"}, auth=("guest", "wrong")).status == 424
    h.model.users["guest"] = "wrong"
    h.clock.advance(0.01)
    assert c.post("/%2F/amq.direct/q", {"body": "fourth"}, auth=("guest", "wrong")).status == 204
    assert bodies(h) == [b"first", b"fourth"]


def test_the_deny_state_gives_up_after_ten_reconnect_attempts() -> None:
    h = Host(vhosts=("/",))
    c = Client(h)
    assert c.post("/nosuchvhost/amq.topic/k", {"body": "x"}).status == 204
    for _ in range(MAX_ATTEMPTS):
        h.clock.advance(RECONNECT_DELAY)
        assert c.post("/nosuchvhost/amq.topic/k", {"body": "x"}).status == 424
    publisher = h.state(StatelessdState).publishers["nosuchvhost:guest"]
    assert publisher.attempts == MAX_ATTEMPTS
    h.model.add_vhost("nosuchvhost")  # too late: statelessd stopped trying
    h.clock.advance(RECONNECT_DELAY * 10)
    assert c.post("/nosuchvhost/amq.topic/k", {"body": "x"}).status == 424
    assert h.clock.pending() == 0


def test_a_user_without_access_to_the_vhost_is_denied(queue_host: Host) -> None:
    c = Client(queue_host)
    assert c.post("/other/amq.topic/k", {"body": "x"}, auth=("bob", "b")).status == 204
    assert c.post("/other/amq.topic/k", {"body": "x"}, auth=("bob", "b")).status == 424
    assert c.post("/%2F/amq.topic/k", {"body": "ok"}, auth=("bob", "b")).status == 204
    assert bodies(queue_host) == [b"ok"]


@pytest.mark.parametrize(("path", "fields"), [
    ("/%2F/no-such-exchange/k", {"body": "x"}),
    ("/%2F/amq.rabbitmq.trace/k", {"body": "x"}),
    ("/%2F/amq.topic/k", {"body": "x", "expire": "soon"}),
    ("/%2F/amq.topic/k", {"body": "x", "user_id": "someone-else"}),
])
def test_a_publish_the_broker_refuses_still_gets_204_and_is_lost(queue_host: Host, path: str,
                                                                  fields: dict[str, str]) -> None:
    c = Client(queue_host)
    assert c.post(path, fields).status == 204
    assert bodies(queue_host) == []
    # The channel was reopened: the next publish goes through.
    assert c.post("/%2F/amq.topic/k", {"body": "next"}).status == 204
    assert bodies(queue_host) == [b"next"]
    stats = queue_host.state(StatelessdState).publishers["/:guest"].stats()
    assert stats["channels"] == {"opened": 2, "closed": 1}
    assert stats["publishes"] == 2


def test_a_deleted_vhost_closes_the_pair_s_connection_and_it_buffers_until_it_reconnects() -> None:
    h = Host(vhosts=("/", "v"))
    c = Client(h)
    h.model.vhost("v").declare_queue("q")
    h.model.vhost("v").bind("q", "amq.direct", "q")
    assert c.post("/v/amq.direct/q", {"body": "1"}).status == 204
    del h.model.vhosts["v"]
    assert c.post("/v/amq.direct/q", {"body": "2"}).status == 204  # buffered, connection lost
    h.model.add_vhost("v").declare_queue("q")
    h.model.vhost("v").bind("q", "amq.direct", "q")
    h.clock.advance(RECONNECT_DELAY)
    assert bodies(h, "q", "v") == [b"2"]
    stats = h.state(StatelessdState).publishers["v:guest"].stats()
    assert stats["connections"] == {"opened": 2, "closed": 1}


def test_stats_has_statelessd_s_shape(queue_host: Host) -> None:
    c = Client(queue_host)
    c.post("/%2F/amq.topic/k", {"body": "x"})
    c.post("/%2F/amq.topic/k", {"body": "x"}, auth=None)
    c.post("/%2F/amq.topic/k", {"body": "x"}, auth=("guest", "nope"), headers={})
    [r] = c.driver.replies(request("GET", "/stats", auth=None))
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    stats = json.loads(r.body)
    assert set(stats) == {"host", "port", "timestamp", "requests", "block", "context_switches", "cpu_time",
                          "memory_usage", "page_faults", "page_size", "signals_received", "swap_outs",
                          "connections"}
    assert stats["port"] == INFO.local[1]
    assert isinstance(stats["timestamp"], int)
    requests = stats["requests"]
    assert requests["method.POST"] == 3
    assert requests["response.204"] == 2 and requests["response.401"] == 1
    assert isinstance(requests["processing_time"], float)
    assert stats["connections"] == {"/:guest": {"connected": True, "connections": {"opened": 1, "closed": 0},
                                                "channels": {"opened": 1, "closed": 0}, "publishes": 2,
                                                "queue_size": 0}}
    assert set(stats["cpu_time"]) == {"user", "system"}
    assert set(stats["page_faults"]) == {"minor", "major"}


@settings(max_examples=100, deadline=None)
@given(vhost=st.text(CHARS, min_size=1, max_size=12), exchange=st.text(CHARS, min_size=1, max_size=12),
       key=st.text(CHARS, min_size=1, max_size=20), body=st.text(CHARS, max_size=40))
def test_any_names_round_trip_through_the_path_and_the_form(vhost: str, exchange: str, key: str,
                                                            body: str) -> None:
    assume(not exchange.startswith("amq."))
    h = Host(vhosts=("/", vhost))
    vh = h.model.vhost(vhost)
    vh.declare_exchange(exchange, "fanout")
    vh.declare_queue("sink")
    vh.bind("sink", exchange, "")
    path = "/" + "/".join(quote(s, safe="") for s in (vhost, exchange, key))
    assert Client(h).post(path, {"body": body}).status == 204
    # Tornado replaces control characters with spaces and strips the value before statelessd reads it.
    expected = re.sub(r"[\x00-\x08\x0e-\x1f]", " ", body).strip()
    assert [(m.routing_key, m.body) for m in vh.queue("sink").peek()] == [(key, expected.encode())]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["body", "delivery_mode", "priority", "timestamp", "expire", "headers",
                                        "user_id", "type", "app_id", "x"]), st.text(CHARS, max_size=12), max_size=6),
       st.sampled_from(["/%2F/amq.topic/k", "/%2F/no-such/k", "/nosuch/amq.topic/k", "/%2F/amq.rabbitmq.trace/k"]))
def test_no_form_makes_a_500(fields: dict[str, str], path: str) -> None:
    r = Client(Host()).post(path, fields)
    assert r.status in (204, 400, 424), (r.status, r.body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_get_http_answers_or_nothing(data: bytes) -> None:
    driver = Driver(statelessd_session(INFO, Host()))
    out = driver.feed(b"POST /%2F/amq.topic/k HTTP/1.1\r\n" + data)
    assert out == b"" or out.startswith(b"HTTP/1.1 ")
