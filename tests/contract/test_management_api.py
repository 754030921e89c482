"""The management HTTP API on both backends: the same requests to fakebroker's management listener and to
RabbitMQ 3.10's, with the same status codes, error bodies and the fields (names and JSON types) tests read.

Counts that RabbitMQ's statistics database reports late (``messages``, ``consumers``) are never compared; a
connection's appearance in ``/api/connections`` is polled for.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from contractlib import Backend, wait_until
from managementlib import api, error, get, publish, put_queue, q

from fakebroker.protocols.mqtt.codec import Will


# -- authentication and routing ---------------------------------------------------------------------------
def test_whoami(backend: Backend) -> None:
    r = api(backend, "GET", "/api/whoami")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"name": "guest", "tags": ["administrator"]}


def test_wrong_password_is_401_login_failed(backend: Backend) -> None:
    r = api(backend, "GET", "/api/whoami", auth=("guest", "not-the-password"))
    assert error(r) == (401, "not_authorized", "Login failed")
    assert r.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'


def test_no_credentials_is_401_with_an_empty_body(backend: Backend) -> None:
    r = api(backend, "GET", "/api/overview", auth=None)
    assert (r.status_code, r.content) == (401, b"")
    assert r.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'


def test_a_method_the_path_does_not_take_is_405_with_allow(backend: Backend) -> None:
    r = api(backend, "DELETE", "/api/overview")
    assert r.status_code == 405
    assert r.headers["allow"] == "HEAD, GET, OPTIONS"
    r = api(backend, "PUT", "/api/queues/{vhost}/x/contents")
    assert (r.status_code, r.headers["allow"]) == (405, "DELETE, OPTIONS")


def test_options_lists_the_methods_without_credentials(backend: Backend) -> None:
    r = api(backend, "OPTIONS", "/api/overview", auth=None)
    assert (r.status_code, r.headers["allow"], r.content) == (200, "HEAD, GET, OPTIONS", b"")
    r = api(backend, "OPTIONS", "/api/queues/{vhost}/anything", auth=None)
    assert (r.status_code, r.headers["allow"]) == (200, "HEAD, GET, PUT, DELETE, OPTIONS")


def test_an_unknown_path_is_404_object_not_found(backend: Backend) -> None:
    assert error(api(backend, "GET", "/api/no-such-thing")) == (404, "Object Not Found", "Not Found")


def test_overview_fields(backend: Backend) -> None:
    r = api(backend, "GET", "/api/overview")
    assert r.status_code == 200
    o = r.json()
    assert (o["product_name"], o["rabbitmq_version"], o["management_version"]) == ("RabbitMQ", "3.10.8", "3.10.8")
    assert isinstance(o["node"], str) and o["node"].startswith("rabbit@")
    assert set(o["object_totals"]) == {"channels", "connections", "consumers", "exchanges", "queues"}
    assert {"messages", "messages_ready", "messages_unacknowledged"} <= set(o["queue_totals"])
    assert {t["name"] for t in o["exchange_types"]} >= {"direct", "fanout", "headers", "topic"}
    protocols = {listener["protocol"] for listener in o["listeners"]}
    assert {"mqtt", "http/web-mqtt", "http"} <= protocols


def test_vhost(backend: Backend) -> None:
    r = api(backend, "GET", "/api/vhosts/{vhost}")
    assert r.status_code == 200
    v = r.json()
    assert (v["name"], v["tracing"], v["description"], v["tags"]) == (backend.vhost, False, "", [])
    assert error(api(backend, "GET", "/api/vhosts/no-such-vhost")) == (404, "Object Not Found", "Not Found")
    names = [v["name"] for v in api(backend, "GET", "/api/vhosts").json()]
    assert backend.vhost in names and "/" in names


def test_aliveness_test(backend: Backend) -> None:
    r = api(backend, "GET", "/api/aliveness-test/{vhost}")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert api(backend, "GET", "/api/queues/{vhost}/aliveness-test").status_code == 200
    assert error(api(backend, "GET", "/api/aliveness-test/no-such-vhost")) == (404, "Object Not Found",
                                                                                "Not Found")


# -- queues -----------------------------------------------------------------------------------------------
def test_put_queue_is_201_then_204(backend: Backend) -> None:
    r = put_queue(backend, "q1", durable=True, arguments={"x-max-length": 3})
    assert (r.status_code, r.content) == (201, b"")
    assert put_queue(backend, "q1", durable=True, arguments={"x-max-length": 3}).status_code == 204


def test_put_queue_inequivalent_is_400_with_rabbitmq_s_text(backend: Backend) -> None:
    put_queue(backend, "q1", arguments={"x-max-length": 3})
    r = put_queue(backend, "q1", arguments={"x-max-length": 4})
    assert error(r) == (400, "bad_request", f"inequivalent arg 'x-max-length' for queue 'q1' in vhost "
                                            f"'{backend.vhost}': received '4' but current is '3'")
    r = put_queue(backend, "q1", durable=True, arguments={"x-max-length": 3})
    assert error(r)[2] == (f"inequivalent arg 'durable' for queue 'q1' in vhost '{backend.vhost}': "
                           "received 'true' but current is 'false'")


@pytest.mark.parametrize(("body", "expected"), [
    (b"not json", (400, "bad_request", "not_json")),
    (b'{"durable": "yes"}', (400, "bad_request", ["not_boolean", "yes"])),
    (b'{"arguments": {"x-max-length": "ten"}}',
     (400, "bad_request", "invalid arg 'x-max-length' for queue 'bad' in vhost '{vhost}': "
                          '"expected integer, got longstr"')),
])
def test_put_queue_refusals(backend: Backend, body: bytes, expected: tuple[int, str, Any]) -> None:
    r = api(backend, "PUT", "/api/queues/{vhost}/bad", data=body)
    status, err, reason = expected
    if isinstance(reason, str):
        reason = reason.replace("{vhost}", backend.vhost)
    assert error(r) == (status, err, reason)
    assert api(backend, "GET", "/api/queues/{vhost}/bad").status_code == 404


def test_put_queue_with_a_reserved_name_is_access_refused(backend: Backend) -> None:
    assert error(put_queue(backend, "amq.mine")) == (401, "not_authorised", "Access refused.")


def test_put_queue_in_a_missing_vhost_is_404_vhost_not_found(backend: Backend) -> None:
    r = api(backend, "PUT", "/api/queues/no-such-vhost/q", {})
    assert error(r) == (404, "not_found", "vhost_not_found")


def test_put_queue_ignores_exclusive(backend: Backend) -> None:
    assert put_queue(backend, "ex", exclusive=True).status_code == 201
    assert api(backend, "GET", "/api/queues/{vhost}/ex").json()["exclusive"] is False


def test_get_queue_fields_and_types(backend: Backend) -> None:
    put_queue(backend, "typed", durable=True, auto_delete=False, arguments={"x-message-ttl": 60000})
    r = api(backend, "GET", "/api/queues/{vhost}/typed")
    assert r.status_code == 200
    body = r.json()
    assert {k: body[k] for k in ("name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "type")} == {
        "name": "typed", "vhost": backend.vhost, "durable": True, "auto_delete": False, "exclusive": False,
        "arguments": {"x-message-ttl": 60000}, "type": "classic"}
    assert body["node"].startswith("rabbit@")
    assert body["consumer_details"] == [] and body["incoming"] == [] and body["deliveries"] == []
    assert error(api(backend, "GET", "/api/queues/{vhost}/missing")) == (404, "Object Not Found", "Not Found")
    assert error(api(backend, "GET", "/api/queues/no-such-vhost")) == (404, "Object Not Found", "Not Found")


def test_queue_listing_sort_and_columns(backend: Backend) -> None:
    for name in ("b-q", "a-q", "c-q"):
        put_queue(backend, name)
    r = api(backend, "GET", "/api/queues/{vhost}")
    assert [i["name"] for i in r.json()] == ["a-q", "b-q", "c-q"]
    r = api(backend, "GET", "/api/queues/{vhost}?columns=name,durable&sort=name&sort_reverse=true")
    assert r.json() == [{"name": "c-q", "durable": False}, {"name": "b-q", "durable": False},
                        {"name": "a-q", "durable": False}]
    everywhere = api(backend, "GET", "/api/queues?columns=name,vhost").json()
    assert {"name": "a-q", "vhost": backend.vhost} in everywhere


def test_queue_pagination_and_the_name_filter(backend: Backend) -> None:
    for name in ("p1", "p2", "p3", "other"):
        put_queue(backend, name)
    page = api(backend, "GET", "/api/queues/{vhost}?page=2&page_size=2&columns=name").json()
    assert page == {"filtered_count": 4, "item_count": 2, "items": [{"name": "p2"}, {"name": "p3"}], "page": 2,
                    "page_count": 2, "page_size": 2, "total_count": 4}
    filtered = api(backend, "GET", "/api/queues/{vhost}?page=1&name=p&columns=name").json()
    assert [i["name"] for i in filtered["items"]] == ["p1", "p2", "p3"]
    assert (filtered["filtered_count"], filtered["total_count"]) == (3, 4)
    regex = api(backend, "GET", "/api/queues/{vhost}?page=1&name=%5Ep%5B13%5D%24&use_regex=true&columns=name")
    assert [i["name"] for i in regex.json()["items"]] == ["p1", "p3"]
    # Without a page, RabbitMQ ignores the name filter.
    assert len(api(backend, "GET", "/api/queues/{vhost}?name=p1").json()) == 4


def test_bad_pagination_parameters(backend: Backend) -> None:
    assert error(api(backend, "GET", "/api/queues/{vhost}?page=1&page_size=0")) == (
        400, "invalid_pagination_parameters", "Invalid pagination parameters: page number 1, page size 0")
    assert error(api(backend, "GET", "/api/queues/{vhost}?page=abc")) == (
        400, "bad_request", "Pagination parameters are invalid")


def test_delete_queue(backend: Backend) -> None:
    put_queue(backend, "gone")
    r = api(backend, "DELETE", "/api/queues/{vhost}/gone")
    assert (r.status_code, r.content) == (204, b"")
    assert error(api(backend, "DELETE", "/api/queues/{vhost}/gone")) == (404, "Object Not Found", "Not Found")


def test_delete_queue_if_empty_refuses_a_queue_with_messages(backend: Backend) -> None:
    put_queue(backend, "full")
    assert publish(backend, "amq.default", "full", "x").json() == {"routed": True}
    r = api(backend, "DELETE", "/api/queues/{vhost}/full?if-empty=true")
    assert error(r) == (400, "bad_request", f"queue 'full' in vhost '{backend.vhost}' not empty")
    assert api(backend, "DELETE", "/api/queues/{vhost}/full?if-unused=true").status_code == 204


def test_purge(backend: Backend) -> None:
    put_queue(backend, "purged")
    for n in range(3):
        publish(backend, "amq.default", "purged", f"m{n}")
    assert api(backend, "DELETE", "/api/queues/{vhost}/purged/contents").status_code == 204
    assert get(backend, "purged").json() == []
    assert error(api(backend, "DELETE", "/api/queues/{vhost}/missing/contents")) == (404, "Object Not Found",
                                                                                     "Not Found")


# -- publish and get --------------------------------------------------------------------------------------
def test_publish_routed_and_unroutable(backend: Backend) -> None:
    put_queue(backend, "dest")
    r = publish(backend, "amq.default", "dest", "hello")
    assert (r.status_code, r.json()) == (200, {"routed": True})
    assert publish(backend, "amq.default", "nowhere", "x").json() == {"routed": False}
    assert publish(backend, "amq.topic", "nowhere", "x").json() == {"routed": False}


def test_publish_refusals(backend: Backend) -> None:
    assert error(publish(backend, "no-such-exchange", "k", "x")) == (
        400, "bad_request", f"404 NOT_FOUND - no exchange 'no-such-exchange' in vhost '{backend.vhost}'")
    r = api(backend, "POST", "/api/exchanges/{vhost}/amq.default/publish", {"routing_key": "k", "payload": "x"})
    assert error(r) == (400, "bad_request", "[{key_missing,properties},{key_missing,payload_encoding}]")
    assert error(publish(backend, "amq.default", "k", "x", encoding="bogus")) == (
        400, "bad_request", ["unsupported_encoding", "bogus"])
    assert error(publish(backend, "amq.default", "k", "!!", encoding="base64")) == (
        400, "bad_request", ["not_base64", "!!"])
    assert error(publish(backend, "amq.default", "k", "x", {"delivery_mode": "2"})) == (
        400, "bad_request", ["not_int", "delivery_mode"])


def test_get_returns_the_message_with_its_properties(backend: Backend) -> None:
    put_queue(backend, "g")
    props = {"content_type": "text/plain", "delivery_mode": 2, "headers": {"h": "v", "n": 1, "b": True},
             "message_id": "m-1", "priority": 3, "timestamp": 1700000000, "app_id": "test"}
    publish(backend, "amq.default", "g", "21.5", props)
    r = get(backend, "g", count=5)
    assert r.status_code == 200
    assert r.json() == [{"payload_bytes": 4, "redelivered": False, "exchange": "", "routing_key": "g",
                         "message_count": 0, "properties": props, "payload": "21.5",
                         "payload_encoding": "string"}]


def test_get_requeue_modes_and_encodings(backend: Backend) -> None:
    put_queue(backend, "g")
    publish(backend, "amq.default", "g", base64.b64encode(b"\xff\x00binary").decode(), encoding="base64")
    publish(backend, "amq.default", "g", "second")
    first = get(backend, "g", count=1, ackmode="ack_requeue_true").json()
    assert first[0]["payload_encoding"] == "base64"
    assert base64.b64decode(first[0]["payload"]) == b"\xff\x00binary"
    assert first[0]["message_count"] == 1
    assert first[0]["properties"] == []  # an empty property table is an Erlang empty list in RabbitMQ's JSON
    again = get(backend, "g", count=2, ackmode="reject_requeue_true", encoding="base64").json()
    assert [m["redelivered"] for m in again] == [True, False]
    assert [m["payload_encoding"] for m in again] == ["base64", "base64"]
    truncated = get(backend, "g", count=2, truncate=3).json()
    assert [(m["payload_bytes"], m["payload"]) for m in truncated] == [(8, base64.b64encode(b"\xff\x00b").decode()),
                                                                      (6, "sec")]
    assert get(backend, "g").json() == []


def test_get_refusals(backend: Backend) -> None:
    put_queue(backend, "g")
    r = api(backend, "POST", "/api/queues/{vhost}/g/get", {"count": 1})
    assert error(r) == (400, "bad_request", "[{key_missing,ackmode},{key_missing,encoding}]")
    assert error(get(backend, "g", encoding="bogus")) == (400, "bad_request",
                                                         "Unsupported encoding. Please use auto or base64.")
    r = api(backend, "POST", "/api/queues/{vhost}/g/get", {"count": "x", "ackmode": "ack_requeue_true",
                                                          "encoding": "auto"})
    assert error(r) == (400, "bad_request", ["not_integer", "x"])
    assert error(get(backend, "missing")) == (404, "not_found",
                                             f"NOT_FOUND - no queue 'missing' in vhost '{backend.vhost}'")


# -- exchanges --------------------------------------------------------------------------------------------
def test_put_exchange(backend: Backend) -> None:
    path = "/api/exchanges/{vhost}/x1"
    assert api(backend, "PUT", path, {"type": "topic", "durable": True}).status_code == 201
    assert api(backend, "PUT", path, {"type": "topic", "durable": True}).status_code == 204
    assert error(api(backend, "PUT", path, {"type": "fanout", "durable": True})) == (
        400, "bad_request", f"inequivalent arg 'type' for exchange 'x1' in vhost '{backend.vhost}': "
                            "received 'fanout' but current is 'topic'")
    # A name the node has never seen: once an Erlang atom of that name exists, RabbitMQ says "invalid" instead.
    kind = f"no-such-type-{backend.prefix}"
    assert error(api(backend, "PUT", "/api/exchanges/{vhost}/x2", {"type": kind})) == (
        400, "bad_request", f"unknown exchange type '{kind}'")
    assert error(api(backend, "PUT", "/api/exchanges/no-such-vhost/x", {"type": "direct"})) == (
        404, "not_found", "vhost_not_found")
    body = api(backend, "GET", path).json()
    assert {k: body[k] for k in ("name", "type", "durable", "auto_delete", "internal", "arguments", "vhost")} == {
        "name": "x1", "type": "topic", "durable": True, "auto_delete": False, "internal": False, "arguments": {},
        "vhost": backend.vhost}


def test_exchange_listing_matches(backend: Backend) -> None:
    r = api(backend, "GET", "/api/exchanges/{vhost}?columns=name,type,durable,internal")
    assert r.json() == [
        {"name": "", "type": "direct", "durable": True, "internal": False},
        {"name": "amq.direct", "type": "direct", "durable": True, "internal": False},
        {"name": "amq.fanout", "type": "fanout", "durable": True, "internal": False},
        {"name": "amq.headers", "type": "headers", "durable": True, "internal": False},
        {"name": "amq.match", "type": "headers", "durable": True, "internal": False},
        {"name": "amq.rabbitmq.trace", "type": "topic", "durable": True, "internal": True},
        {"name": "amq.topic", "type": "topic", "durable": True, "internal": False},
    ]
    default = api(backend, "GET", "/api/exchanges/{vhost}/amq.default").json()
    assert (default["name"], default["type"]) == ("", "direct")


def test_delete_exchange(backend: Backend) -> None:
    api(backend, "PUT", "/api/exchanges/{vhost}/mine", {"type": "direct"})
    assert api(backend, "DELETE", "/api/exchanges/{vhost}/mine").status_code == 204
    assert error(api(backend, "DELETE", "/api/exchanges/{vhost}/mine")) == (404, "Object Not Found", "Not Found")
    assert error(api(backend, "DELETE", "/api/exchanges/{vhost}/amq.topic")) == (401, "not_authorised",
                                                                                 "Access refused.")
    assert error(api(backend, "GET", "/api/exchanges/{vhost}/mine")) == (404, "Object Not Found", "Not Found")


# -- bindings ---------------------------------------------------------------------------------------------
def test_binding_lifecycle_by_properties_key(backend: Backend) -> None:
    put_queue(backend, "bq")
    api(backend, "PUT", "/api/exchanges/{vhost}/bx", {"type": "topic"})
    r = api(backend, "POST", "/api/bindings/{vhost}/e/bx/q/bq", {"routing_key": "a/b c~d-e_f.g*#"})
    assert (r.status_code, r.headers["location"]) == (201, "bq/a%252Fb%2Bc%257Ed-e_f.g%252A%2523")
    assert api(backend, "POST", "/api/bindings/{vhost}/e/bx/q/bq", {"routing_key": ""}).headers["location"] == "bq/~"
    listed = api(backend, "GET", "/api/bindings/{vhost}/e/bx/q/bq").json()
    assert [(b["routing_key"], b["properties_key"]) for b in listed] == [("", "~"),
                                                                        ("a/b c~d-e_f.g*#", "a%2Fb+c%7Ed-e_f.g%2A%23")]
    assert listed[0] == {"source": "bx", "vhost": backend.vhost, "destination": "bq", "destination_type": "queue",
                         "routing_key": "", "arguments": {}, "properties_key": "~"}
    one = api(backend, "GET", "/api/bindings/{vhost}/e/bx/q/bq/a%252Fb%2Bc%257Ed-e_f.g%252A%2523")
    assert one.json()["routing_key"] == "a/b c~d-e_f.g*#"
    assert api(backend, "DELETE", "/api/bindings/{vhost}/e/bx/q/bq/%7E").status_code == 204
    assert error(api(backend, "DELETE", "/api/bindings/{vhost}/e/bx/q/bq/%7E")) == (404, "Object Not Found",
                                                                                   "Not Found")


def test_a_queue_named_e_is_a_queue_in_the_binding_paths(backend: Backend) -> None:
    # The "e" of /e/{exchange}/q/{queue} is a path segment: a queue (or routing key) named "e" is just a name.
    put_queue(backend, "e")
    api(backend, "PUT", "/api/exchanges/{vhost}/bx", {"type": "topic"})
    assert api(backend, "POST", "/api/bindings/{vhost}/e/bx/q/e", {"routing_key": "e"}).status_code == 201
    assert api(backend, "GET", "/api/bindings/{vhost}/e/bx/q/e/e").json()["destination_type"] == "queue"
    assert api(backend, "DELETE", "/api/bindings/{vhost}/e/bx/q/e/e").status_code == 204
    assert api(backend, "GET", "/api/bindings/{vhost}/e/bx/q/e").json() == []


def test_a_binding_with_arguments_is_deleted_by_the_key_the_listing_gives(backend: Backend) -> None:
    put_queue(backend, "bq")
    api(backend, "PUT", "/api/exchanges/{vhost}/hx", {"type": "headers"})
    r = api(backend, "POST", "/api/bindings/{vhost}/e/hx/q/bq", {"routing_key": "k", "arguments": {"x-match": "any",
                                                                                                 "a": 1}})
    assert r.status_code == 201
    [binding] = api(backend, "GET", "/api/bindings/{vhost}/e/hx/q/bq").json()
    assert binding["arguments"] == {"x-match": "any", "a": 1}
    key = binding["properties_key"]
    assert key.startswith("k~") and r.headers["location"] == f"bq/{q(key)}"
    assert api(backend, "DELETE", f"/api/bindings/{{vhost}}/e/hx/q/bq/{q(key)}").status_code == 204
    assert api(backend, "GET", "/api/bindings/{vhost}/e/hx/q/bq").json() == []


def test_binding_refusals(backend: Backend) -> None:
    put_queue(backend, "bq")
    assert error(api(backend, "POST", "/api/bindings/{vhost}/e/nox/q/bq", {})) == (
        404, "not_found", f"no exchange 'nox' in vhost '{backend.vhost}'")
    assert error(api(backend, "POST", "/api/bindings/{vhost}/e/amq.topic/q/noq", {})) == (
        404, "not_found", f"no queue 'noq' in vhost '{backend.vhost}'")
    assert error(api(backend, "POST", "/api/bindings/{vhost}/e/amq.default/q/bq", {"routing_key": "r"})) == (
        401, "not_authorised", "Access refused.")
    assert api(backend, "GET", "/api/bindings/{vhost}/e/nox/q/bq").json() == []


def test_binding_listings_include_the_default_exchange(backend: Backend) -> None:
    put_queue(backend, "lq")
    api(backend, "POST", "/api/bindings/{vhost}/e/amq.topic/q/lq", {"routing_key": "sensors.#"})
    queue_bindings = api(backend, "GET", "/api/queues/{vhost}/lq/bindings").json()
    assert [(b["source"], b["routing_key"], b["properties_key"]) for b in queue_bindings] == [
        ("", "lq", "lq"), ("amq.topic", "sensors.#", "sensors.%23")]
    everything = api(backend, "GET", "/api/bindings/{vhost}").json()
    assert [(b["source"], b["destination"], b["routing_key"]) for b in everything] == [
        ("", "lq", "lq"), ("amq.topic", "lq", "sensors.#")]
    source = api(backend, "GET", "/api/exchanges/{vhost}/amq.topic/bindings/source").json()
    assert [(b["destination"], b["routing_key"]) for b in source] == [("lq", "sensors.#")]


# -- connections and consumers ----------------------------------------------------------------------------
def _mqtt_connection(backend: Backend, client_id: str) -> dict[str, Any] | None:
    for c in api(backend, "GET", "/api/connections").json():
        if (c.get("client_properties") or {}).get("client_id") == client_id:
            return c  # type: ignore[no-any-return]
    return None


def test_an_mqtt_connection_is_listed_and_its_consumer_too(backend: Backend) -> None:
    client = backend.raw()
    cid = backend.cid("listed")
    client.connect(cid)
    client.subscribe(("mgmt/#", 1))
    conn = wait_until(lambda: _mqtt_connection(backend, cid), what="the connection in /api/connections")
    assert (conn["protocol"], conn["user"], conn["vhost"], conn["type"]) == ("MQTT 3.1.1", "guest", backend.vhost,
                                                                             "direct")
    assert conn["client_properties"] == {"client_id": cid, "product": "MQTT client"}
    assert conn["name"] == f"{conn['peer_host']}:{conn['peer_port']} -> {conn['host']}:{conn['port']}"
    assert isinstance(conn["connected_at"], int)
    one = api(backend, "GET", f"/api/connections/{q(conn['name'])}")
    assert one.json()["name"] == conn["name"]
    in_vhost = api(backend, "GET", "/api/vhosts/{vhost}/connections").json()
    assert [c["name"] for c in in_vhost] == [conn["name"]]

    def consumer() -> dict[str, Any] | None:
        # RabbitMQ fills channel_details from its statistics: [] until they arrive.
        found = api(backend, "GET", "/api/consumers/{vhost}").json()
        return found[0] if found and found[0]["channel_details"] else None

    c = wait_until(consumer, what="the consumer in /api/consumers")
    assert c["queue"] == {"name": backend.queue_name(cid, 1), "vhost": backend.vhost}
    assert (c["ack_required"], c["prefetch_count"], c["active"]) == (True, 10, True)
    assert c["channel_details"]["connection_name"] == conn["name"]
    assert error(api(backend, "GET", "/api/connections/no-such-connection")) == (404, "Object Not Found",
                                                                                 "Not Found")


def test_delete_connection_closes_it_without_the_will(backend: Backend) -> None:
    watcher = backend.watcher(("will/#", 0))
    client = backend.raw()
    cid = backend.cid("closed")
    client.connect(cid, will=Will("will/closed", b"gone", 0, False))
    conn = wait_until(lambda: _mqtt_connection(backend, cid), what="the connection in /api/connections")
    r = api(backend, "DELETE", f"/api/connections/{q(conn['name'])}", headers={"X-Reason": "contract test"})
    assert r.status_code == 204
    client.expect_closed()
    wait_until(lambda: _mqtt_connection(backend, cid) is None, what="the connection to leave the listing")
    watcher.expect_open()
    assert watcher.inbox == []
    assert error(api(backend, "DELETE", f"/api/connections/{q(conn['name'])}")) == (404, "Object Not Found",
                                                                                    "Not Found")


# -- deliberate differences -------------------------------------------------------------------------------
@pytest.mark.difference("management-api-an-unknown-ackmode-is-a-400")
def test_an_unknown_ackmode(backend: Backend) -> None:
    put_queue(backend, "g")
    r = get(backend, "g", ackmode="bogus")
    if backend.is_fake:
        assert r.status_code == 400 and "ackmode" in r.json()["reason"]
    else:
        assert r.status_code == 500


@pytest.mark.difference("management-api-binding-property-keys-with-arguments")
def test_the_property_key_of_a_binding_with_arguments(backend: Backend) -> None:
    put_queue(backend, "bq")
    api(backend, "PUT", "/api/exchanges/{vhost}/hx", {"type": "topic"})
    api(backend, "POST", "/api/bindings/{vhost}/e/hx/q/bq", {"routing_key": "k", "arguments": {"a": 1}})
    [binding] = api(backend, "GET", "/api/bindings/{vhost}/e/hx/q/bq").json()
    if backend.is_fake:
        assert binding["properties_key"].startswith("k~") and binding["properties_key"] != "k~Ajat_Q"
    else:
        assert binding["properties_key"] == "k~Ajat_Q"  # Erlang's phash2 of the argument table


def test_columns_on_a_single_object_keep_whole_top_level_fields(backend: Backend) -> None:
    o = api(backend, "GET", "/api/overview?columns=object_totals.queues,rabbitmq_version").json()
    assert set(o) == {"object_totals", "rabbitmq_version"}
    assert set(o["object_totals"]) == {"channels", "connections", "consumers", "exchanges", "queues"}
    assert api(backend, "GET", "/api/vhosts/{vhost}?columns=name").json() == {"name": backend.vhost}


# -- field names and JSON types, as RabbitMQ 3.10.8 answered (its statistics included) ----------------------
QUEUE_FIELDS = {
    "arguments", "auto_delete", "backing_queue_status", "consumer_capacity", "consumer_utilisation", "consumers",
    "durable", "effective_policy_definition", "exclusive", "exclusive_consumer_tag", "garbage_collection",
    "head_message_timestamp", "idle_since", "memory", "message_bytes", "message_bytes_paged_out",
    "message_bytes_persistent", "message_bytes_ram", "message_bytes_ready", "message_bytes_unacknowledged",
    "messages", "messages_details", "messages_paged_out", "messages_persistent", "messages_ram", "messages_ready",
    "messages_ready_details", "messages_ready_ram", "messages_unacknowledged", "messages_unacknowledged_details",
    "messages_unacknowledged_ram", "name", "node", "operator_policy", "policy", "recoverable_slaves", "reductions",
    "reductions_details", "single_active_consumer_tag", "state", "type", "vhost",
}
MQTT_CONNECTION_FIELDS = {
    "channel_max", "channels", "client_properties", "connected_at", "frame_max", "garbage_collection", "host",
    "name", "node", "peer_host", "peer_port", "port", "protocol", "recv_cnt", "recv_oct", "recv_oct_details",
    "reductions", "reductions_details", "send_cnt", "send_oct", "send_oct_details", "send_pend", "ssl", "state",
    "type", "user", "user_who_performed_action", "variable_map", "vhost",
}
CONSUMER_FIELDS = {"ack_required", "active", "activity_status", "arguments", "channel_details", "consumer_tag",
                   "exclusive", "prefetch_count", "queue"}
EXCHANGE_FIELDS = {"arguments", "auto_delete", "durable", "internal", "name", "type", "user_who_performed_action",
                   "vhost"}
VHOST_FIELDS = {
    "cluster_state", "default_queue_type", "description", "messages", "messages_details", "messages_ready",
    "messages_ready_details", "messages_unacknowledged", "messages_unacknowledged_details", "metadata", "name",
    "recv_oct", "recv_oct_details", "send_oct", "send_oct_details", "tags", "tracing",
}
OVERVIEW_FIELDS = {
    "churn_rates", "cluster_name", "contexts", "disable_stats", "enable_queue_totals", "erlang_full_version",
    "erlang_version", "exchange_types", "listeners", "management_version", "message_stats", "node",
    "object_totals", "product_name", "product_version", "queue_totals", "rabbitmq_version", "rates_mode",
    "release_series_support_status", "sample_retention_policies", "statistics_db_event_queue",
}


def _types(item: dict[str, Any], fields: dict[str, type | tuple[type, ...]]) -> dict[str, bool]:
    return {k: isinstance(item[k], t) and not (t is int and isinstance(item[k], bool)) for k, t in fields.items()}


def test_queue_fields_and_types_once_statistics_are_in(backend: Backend) -> None:
    put_queue(backend, "stats", durable=True, arguments={"x-max-length": 10})
    publish(backend, "amq.default", "stats", "x", {"delivery_mode": 2})
    # RabbitMQ adds the statistics fields in two steps: counts first, then the process's figures.
    queue = wait_until(lambda: next((q for q in api(backend, "GET", "/api/queues/{vhost}").json()
                                     if "backing_queue_status" in q and q.get("messages") == 1), None),
                       timeout=15, what="queue statistics")
    # idle_since: RabbitMQ shows it once the queue has been idle for a while; fakebroker always.
    assert QUEUE_FIELDS - {"idle_since"} <= set(queue) <= QUEUE_FIELDS
    assert all(_types(queue, {"name": str, "durable": bool, "arguments": dict, "messages": int,
                              "messages_ready": int, "messages_details": dict, "consumers": int, "memory": int,
                              "message_bytes": int, "state": str, "node": str,
                              "backing_queue_status": dict, "garbage_collection": dict}).values())


def test_vhost_exchange_and_overview_fields(backend: Backend) -> None:
    put_queue(backend, "activity")
    publish(backend, "amq.default", "activity", "x")  # a vhost has statistics once something happened in it
    vhost = wait_until(lambda: (v := api(backend, "GET", "/api/vhosts/{vhost}").json()) and "messages" in v and v,
                       timeout=15, what="vhost statistics")
    # Byte counts (recv_oct, send_oct) appear on RabbitMQ once a connection of the vhost carried traffic.
    traffic = {"recv_oct", "recv_oct_details", "send_oct", "send_oct_details"}
    assert VHOST_FIELDS - traffic <= set(vhost) <= VHOST_FIELDS
    assert set(api(backend, "GET", "/api/exchanges/{vhost}").json()[0]) == EXCHANGE_FIELDS
    overview = api(backend, "GET", "/api/overview").json()
    assert set(overview) == OVERVIEW_FIELDS
    assert all(_types(overview, {"object_totals": dict, "queue_totals": dict, "listeners": list,
                                 "exchange_types": list, "disable_stats": bool, "node": str}).values())


def test_mqtt_connection_and_consumer_fields(backend: Backend) -> None:
    client = backend.raw()
    cid = backend.cid("fields")
    client.connect(cid)
    client.subscribe(("fields/#", 1))

    def connection() -> dict[str, Any] | None:
        # RabbitMQ fills a connection's statistics in stages (process stats, then the octet counters), each on
        # its next emission: wait for the whole set rather than for the first of them.
        found = _mqtt_connection(backend, cid)
        return found if found and set(found) >= MQTT_CONNECTION_FIELDS else None

    conn = wait_until(connection, what="the connection's statistics")
    assert set(conn) == MQTT_CONNECTION_FIELDS
    assert all(_types(conn, {"connected_at": int, "peer_port": int, "port": int, "channels": int, "ssl": bool,
                             "client_properties": dict, "variable_map": dict, "name": str}).values())
    consumers = wait_until(lambda: [c for c in api(backend, "GET", "/api/consumers/{vhost}").json()
                                    if c["channel_details"]], what="the consumer")
    assert set(consumers[0]) == CONSUMER_FIELDS
    assert set(consumers[0]["channel_details"]) == {"connection_name", "name", "node", "number", "peer_host",
                                                    "peer_port", "user"}


def test_vhost_and_permission_lifecycle(backend: Backend) -> None:
    name = backend.vhost + "x"  # still a contract-<time>-<token> name, so an interrupted run's leftover is removed
    path = f"/api/vhosts/{q(name)}"
    try:
        assert api(backend, "PUT", path, {"description": "made by a test", "tags": "a,b"}).status_code == 201
        vhost = api(backend, "GET", path).json()
        assert (vhost["name"], vhost["description"], vhost["tags"]) == (name, "made by a test", ["a", "b"])
        # A second PUT replaces the metadata: what it leaves out is emptied.
        assert api(backend, "PUT", path, {"description": "changed"}).status_code == 204
        vhost = api(backend, "GET", path).json()
        assert (vhost["description"], vhost["tags"], vhost["metadata"]) == ("changed", [], {"description": "changed",
                                                                                            "tags": []})
        # The user who made the vhost may use it.
        permission = api(backend, "GET", f"/api/permissions/{q(name)}/guest").json()
        assert permission == {"user": "guest", "vhost": name, "configure": ".*", "write": ".*", "read": ".*"}
        assert api(backend, "PUT", f"/api/permissions/{q(name)}/guest",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status_code == 204
        assert error(api(backend, "PUT", f"/api/permissions/{q(name)}/no-such-user", {})) == (
            400, "bad_request", "vhost_or_user_not_found")
        assert api(backend, "PUT", f"/api/queues/{q(name)}/in-it", {}).status_code == 201

        client = backend.raw()
        assert client.connect(backend.cid("in-vhost"), username=f"{name}:guest").return_code == 0
        assert api(backend, "DELETE", path).status_code == 204
        client.expect_closed()
        assert error(api(backend, "GET", path)) == (404, "Object Not Found", "Not Found")
        assert error(api(backend, "GET", f"/api/queues/{q(name)}/in-it")) == (404, "Object Not Found", "Not Found")
        assert error(api(backend, "DELETE", path)) == (404, "Object Not Found", "Not Found")
    finally:
        api(backend, "DELETE", path)


def test_an_amqp_connection_is_listed_and_force_closed_with_connection_forced(backend: Backend) -> None:
    import amqpkit

    conn = amqpkit.connect(backend, client_properties={"connection_name": f"{backend.prefix}-amqp"})
    ch = conn.channel()
    ch.queue_declare("amqp-consumed")
    ch.basic_consume("amqp-consumed", lambda *a: None, consumer_tag="mgmt-tag")

    def listed() -> dict[str, Any] | None:
        for c in api(backend, "GET", "/api/vhosts/{vhost}/connections").json():
            if c.get("user_provided_name") == f"{backend.prefix}-amqp" and "channels" in c:
                return c  # type: ignore[no-any-return]
        return None

    c = wait_until(listed, what="the AMQP connection in /api/connections")
    assert (c["protocol"], c["type"], c["user"], c["vhost"], c["auth_mechanism"]) == (
        "AMQP 0-9-1", "network", "guest", backend.vhost, "PLAIN")
    assert c["client_properties"]["connection_name"] == f"{backend.prefix}-amqp"
    consumers = wait_until(lambda: [x for x in api(backend, "GET", "/api/consumers/{vhost}").json()
                                    if x["consumer_tag"] == "mgmt-tag" and x["channel_details"]], what="consumer")
    assert consumers[0]["queue"] == {"name": "amqp-consumed", "vhost": backend.vhost}
    assert consumers[0]["channel_details"]["connection_name"] == c["name"]
    assert api(backend, "DELETE", f"/api/connections/{q(c['name'])}",
               headers={"X-Reason": "closed by a test"}).status_code == 204
    assert amqpkit.connection_error(lambda: amqpkit.pump(conn, lambda: False)) == (
        320, "CONNECTION_FORCED - closed by a test")


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
def test_a_stomp_connection_is_listed(backend: Backend, transport: str) -> None:
    client = backend.stomp_client() if transport == "tcp" else backend.web_stomp_client()
    client.connected("1.2")

    def listed() -> list[dict[str, Any]]:
        return [c for c in api(backend, "GET", "/api/vhosts/{vhost}/connections").json()
                if c.get("protocol", "").endswith("STOMP 1.2")]

    [c] = wait_until(listed, what="the STOMP connection in /api/connections")
    assert (c["protocol"], c["type"], c["user"], c["client_properties"]) == (
        "STOMP 1.2" if transport == "tcp" else "Web STOMP 1.2", "direct", "guest", {"product": "STOMP client"})


def test_header_values_of_every_json_type_round_trip(backend: Backend) -> None:
    put_queue(backend, "typed-headers")
    headers = {"int": 7, "negative": -3, "big": 2**40, "float": 1.5, "true": True, "false": False, "text": "x",
               "empty": "", "list": [1, "two", [3]], "table": {"nested": {"deeper": 1}}, "unicode": "caf\u00e9"}
    assert publish(backend, "amq.default", "typed-headers", "h", {"headers": headers}).json() == {"routed": True}
    [got] = get(backend, "typed-headers").json()
    assert got["properties"] == {"headers": headers}


@pytest.mark.parametrize("path", ["/api/healthchecks/node", "/api/health/checks/alarms",
                                  "/api/health/checks/local-alarms", "/api/health/checks/virtual-hosts",
                                  "/api/health/checks/certificate-expiration/1/months"])
def test_health_checks(backend: Backend, path: str) -> None:
    r = api(backend, "GET", path)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_listener_health_checks(backend: Backend) -> None:
    port = backend.mqtt[1]
    assert api(backend, "GET", f"/api/health/checks/port-listener/{port}").json() == {"status": "ok", "port": port}
    r = api(backend, "GET", "/api/health/checks/port-listener/1")
    assert r.status_code == 503
    body = r.json()
    assert (body["status"], body["reason"], body["missing"]) == ("failed", "No active listener", 1)
    assert port in body["ports"]
    for protocol in ("mqtt", "http", "http/web-mqtt"):
        assert api(backend, "GET", f"/api/health/checks/protocol-listener/{q(protocol)}").json() == {
            "status": "ok", "protocol": protocol}
    r = api(backend, "GET", "/api/health/checks/protocol-listener/nope")
    assert r.status_code == 503 and r.json()["missing"] == "nope" and "mqtt" in r.json()["protocols"]
    single = api(backend, "GET", "/api/health/checks/node-is-quorum-critical").json()
    assert single == {"status": "ok", "reason": "single node cluster"}


def test_exchange_to_exchange_bindings(backend: Backend) -> None:
    for name, kind in (("src", "topic"), ("dst", "fanout")):
        api(backend, "PUT", f"/api/exchanges/{{vhost}}/{name}", {"type": kind})
    put_queue(backend, "behind")
    api(backend, "POST", "/api/bindings/{vhost}/e/dst/q/behind", {"routing_key": ""})
    r = api(backend, "POST", "/api/bindings/{vhost}/e/src/e/dst", {"routing_key": "orders.#"})
    assert (r.status_code, r.headers["location"]) == (201, "dst/orders.%2523")
    [binding] = api(backend, "GET", "/api/bindings/{vhost}/e/src/e/dst").json()
    assert binding == {"source": "src", "vhost": backend.vhost, "destination": "dst", "destination_type": "exchange",
                       "routing_key": "orders.#", "arguments": {}, "properties_key": "orders.%23"}
    destination = api(backend, "GET", "/api/exchanges/{vhost}/dst/bindings/destination").json()
    assert [(b["source"], b["destination"]) for b in destination] == [("src", "dst")]
    source = api(backend, "GET", "/api/exchanges/{vhost}/src/bindings/source").json()
    assert [(b["destination"], b["destination_type"]) for b in source] == [("dst", "exchange")]
    assert publish(backend, "src", "orders.new", "through two exchanges").json() == {"routed": True}
    assert get(backend, "behind").json()[0]["payload"] == "through two exchanges"
    assert error(api(backend, "POST", "/api/bindings/{vhost}/e/src/e/nowhere", {})) == (
        404, "not_found", f"no exchange 'nowhere' in vhost '{backend.vhost}'")
    assert api(backend, "DELETE", "/api/bindings/{vhost}/e/src/e/dst/orders.%2523").status_code == 204
    assert api(backend, "GET", "/api/bindings/{vhost}/e/src/e/dst").json() == []
    assert publish(backend, "src", "orders.new", "x").json() == {"routed": False}
