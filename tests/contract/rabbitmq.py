"""Typed helper for a real RabbitMQ's management HTTP API, the oracle of the contract tests.

Stdlib only (urllib).  The broker is the one `scripts/rabbitmq.sh start` boots: every listener on 127.0.0.1,
management on port 15672 with guest/guest, MQTT on 1883.  Set ``FAKEBROKER_RABBITMQ=<host>`` to point at
another host (``.ci/run`` sets it to ``127.0.0.1`` when it started RabbitMQ; unset means "not available").

Freshness of what the API reports
---------------------------------
* ``get``, ``publish``, ``declare_queue``, ``delete_queue``, ``bind``, ``list_bindings`` and ``queue``'s
  name/durable/auto_delete/exclusive/arguments are synchronous: they reflect the broker's state at the time of
  the request.  A closed connection leaves ``connections()`` at once.
* Everything else comes from the statistics database and lags: message and consumer counts (``messages``,
  ``consumers`` in ``list_queues``/``queue``) and a new connection's appearance in ``connections()``.  The
  lag is the metrics collector's interval (the smallest ``management.sample_retention_policies`` interval:
  5 s by default).  scripts/rabbitmq.sh sets it to 1 s (the minimum) and ``collect_statistics_interval`` to
  500 ms; measured there, a count is current 0.6-1.0 s after a publish (5 s with the defaults), and a
  queue declared a moment ago has no counts yet (``None`` here).  To know what is in a queue, ``get`` it
  (that consumes the messages) or poll with ``wait_for``; never assert on a count read right after a publish.

Messages read with ``get`` are removed (ackmode ``ack_requeue_false``); payloads travel base64-encoded, so the
bytes are exact.  Header values keep only their JSON type: AMQP's byte-typed ``x-mqtt-publish-qos`` and a
32-bit int both read back as a Python ``int``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypedDict, TypeVar

HOST = os.environ.get("FAKEBROKER_RABBITMQ") or "127.0.0.1"
MANAGEMENT_PORT = 15672
MQTT_PORT = 1883
STOMP_PORT = 61613
USER = "guest"
PASSWORD = "guest"
DEFAULT_VHOST = "/"
#: Durable things tests leave behind: persistent MQTT sessions, durable STOMP subscriptions, our own queues.
LEFTOVER_PREFIXES: tuple[str, ...] = ("mqtt-subscription-", "stomp-subscription-", "contract-")

T = TypeVar("T")


def enabled() -> bool:
    """True when the environment says a real RabbitMQ is up (``FAKEBROKER_RABBITMQ`` is set)."""
    return bool(os.environ.get("FAKEBROKER_RABBITMQ"))


class ManagementError(Exception):
    """A non-2xx answer from the management API."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body}")
        self.method = method
        self.path = path
        self.status = status
        self.body = body


class QueueInfo(TypedDict):
    name: str
    vhost: str
    durable: bool
    auto_delete: bool
    exclusive: bool
    arguments: dict[str, Any]
    messages: int | None  # lags: see the module docstring; None until the first stats emission
    consumers: int | None


class BindingInfo(TypedDict):
    source: str  # exchange name; "" is the default exchange
    destination: str
    destination_type: str  # "queue" or "exchange"
    routing_key: str
    arguments: dict[str, Any]
    vhost: str


class Message(TypedDict):
    exchange: str  # "" for the default exchange
    routing_key: str
    payload: bytes
    properties: dict[str, Any]  # AMQP basic properties; custom headers under properties["headers"]
    redelivered: bool
    message_count: int  # messages left in the queue after this one


def _q(segment: str) -> str:
    """Quote one path segment (``/`` included, so vhost ``/`` is ``%2F``)."""
    return urllib.parse.quote(segment, safe="")


def request(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Any:
    """One management API call; returns the decoded JSON (None for an empty body).

    ``path`` starts with ``/api/``.  Raises ManagementError on any non-2xx status.
    """
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{HOST}:{MANAGEMENT_PORT}{path}", data=data, method=method)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise ManagementError(method, path, exc.code, exc.read().decode(errors="replace")) from None
    return json.loads(raw) if raw.strip() else None


def _port_open(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_reachable(timeout: float = 1.0) -> bool:
    """True when the management API answers with guest/guest and the MQTT port accepts TCP."""
    if not _port_open(MQTT_PORT, timeout):
        return False
    try:
        request("GET", "/api/overview", timeout=timeout)
    except (OSError, ManagementError, ValueError):
        return False
    return True


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s: {predicate!r}")
        time.sleep(interval)


# --- vhosts (for per-test isolation: MQTT picks one with the username "vhost:guest") ---------------------


def add_vhost(name: str) -> None:
    """Create a vhost and give guest full permissions on it (idempotent)."""
    request("PUT", f"/api/vhosts/{_q(name)}", {})
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    request("PUT", f"/api/permissions/{_q(name)}/{_q(USER)}", everything)


def delete_vhost(name: str) -> bool:
    """Delete a vhost and everything in it; False when it did not exist."""
    return _delete(f"/api/vhosts/{_q(name)}")


# --- queues ------------------------------------------------------------------------------------------------


def _queue_info(raw: Mapping[str, Any]) -> QueueInfo:
    return QueueInfo(
        name=raw["name"],
        vhost=raw["vhost"],
        durable=bool(raw["durable"]),
        auto_delete=bool(raw["auto_delete"]),
        exclusive=bool(raw.get("exclusive", False)),
        arguments=dict(raw.get("arguments") or {}),
        messages=raw.get("messages"),
        consumers=raw.get("consumers"),
    )


def list_queues(vhost: str | None = DEFAULT_VHOST) -> list[QueueInfo]:
    """All queues of ``vhost`` (of every vhost when None), sorted by name."""
    path = "/api/queues" if vhost is None else f"/api/queues/{_q(vhost)}"
    return sorted((_queue_info(q) for q in request("GET", path)), key=lambda q: (q["vhost"], q["name"]))


def queue(name: str, vhost: str = DEFAULT_VHOST) -> QueueInfo | None:
    """One queue, or None when it does not exist."""
    try:
        raw = request("GET", f"/api/queues/{_q(vhost)}/{_q(name)}")
    except ManagementError as exc:
        if exc.status == 404:
            return None
        raise
    return _queue_info(raw)


def declare_queue(
    name: str,
    durable: bool = False,
    auto_delete: bool = False,
    arguments: Mapping[str, Any] | None = None,
    vhost: str = DEFAULT_VHOST,
) -> None:
    """queue.declare with AMQP defaults (not durable, not auto-delete).

    Exclusive queues cannot be declared through the management API (they need an owning connection).
    Re-declaring with different properties raises ManagementError (status 400, PRECONDITION_FAILED).
    """
    body = {"durable": durable, "auto_delete": auto_delete, "arguments": dict(arguments or {})}
    request("PUT", f"/api/queues/{_q(vhost)}/{_q(name)}", body)


def _delete(path: str, headers: dict[str, str] | None = None) -> bool:
    """DELETE a management resource; False when it did not exist."""
    try:
        request("DELETE", path, headers=headers)
    except ManagementError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def delete_queue(name: str, vhost: str = DEFAULT_VHOST) -> bool:
    """Delete a queue; False when it did not exist."""
    return _delete(f"/api/queues/{_q(vhost)}/{_q(name)}")


def purge_queue(name: str, vhost: str = DEFAULT_VHOST) -> None:
    """Drop every ready message of a queue."""
    request("DELETE", f"/api/queues/{_q(vhost)}/{_q(name)}/contents")


def purge_leftovers(prefixes: Iterable[str] = LEFTOVER_PREFIXES, vhost: str | None = None) -> list[str]:
    """Delete the queues whose names start with one of ``prefixes`` (in every vhost when ``vhost`` is None).

    Returns the deleted names.  Queues with a live consumer are deleted too (their MQTT/STOMP subscribers
    are then cancelled), so call this when no test client is connected.
    """
    wanted = tuple(prefixes)
    deleted = []
    for q in list_queues(vhost):
        if q["name"].startswith(wanted) and delete_queue(q["name"], q["vhost"]):
            deleted.append(q["name"])
    return deleted


# --- exchanges and bindings --------------------------------------------------------------------------------


def declare_exchange(
    name: str,
    type: str = "direct",
    durable: bool = False,
    auto_delete: bool = False,
    arguments: Mapping[str, Any] | None = None,
    vhost: str = DEFAULT_VHOST,
) -> None:
    body = {"type": type, "durable": durable, "auto_delete": auto_delete, "arguments": dict(arguments or {})}
    request("PUT", f"/api/exchanges/{_q(vhost)}/{_q(name)}", body)


def delete_exchange(name: str, vhost: str = DEFAULT_VHOST) -> bool:
    """Delete an exchange; False when it did not exist."""
    return _delete(f"/api/exchanges/{_q(vhost)}/{_q(name)}")


def _api_exchange(exchange: str) -> str:
    # The API names the default exchange "amq.default".
    return _q(exchange or "amq.default")


def bind(
    queue: str,
    exchange: str,
    routing_key: str,
    arguments: Mapping[str, Any] | None = None,
    vhost: str = DEFAULT_VHOST,
) -> None:
    """queue.bind (the default exchange cannot be bound to)."""
    body = {"routing_key": routing_key, "arguments": dict(arguments or {})}
    request("POST", f"/api/bindings/{_q(vhost)}/e/{_q(exchange)}/q/{_q(queue)}", body)


def list_bindings(queue: str | None = None, vhost: str = DEFAULT_VHOST) -> list[BindingInfo]:
    """Bindings of ``vhost`` (only those to ``queue`` when given), including the default-exchange ones
    (``source == ""``), sorted by (source, destination, routing_key)."""
    path = f"/api/bindings/{_q(vhost)}" if queue is None else f"/api/queues/{_q(vhost)}/{_q(queue)}/bindings"
    out = [
        BindingInfo(
            source=b["source"],
            destination=b["destination"],
            destination_type=b["destination_type"],
            routing_key=b["routing_key"],
            arguments=dict(b.get("arguments") or {}),
            vhost=b["vhost"],
        )
        for b in request("GET", path)
    ]
    return sorted(out, key=lambda b: (b["source"], b["destination"], b["routing_key"]))


# --- messages ----------------------------------------------------------------------------------------------


def get(queue: str, count: int = 1, vhost: str = DEFAULT_VHOST, *, requeue: bool = False) -> list[Message]:
    """basic.get up to ``count`` messages, removing them (``requeue=True`` puts them back, redelivered).

    Returns [] when the queue is empty; raises ManagementError (404) when it does not exist.
    """
    body = {
        "count": count,
        "ackmode": "ack_requeue_true" if requeue else "ack_requeue_false",
        "encoding": "base64",
    }
    raw = request("POST", f"/api/queues/{_q(vhost)}/{_q(queue)}/get", body)
    out = []
    for m in raw:
        payload = m["payload"]
        data = base64.b64decode(payload) if m.get("payload_encoding") == "base64" else payload.encode()
        props = m.get("properties") or {}
        out.append(
            Message(
                exchange=m["exchange"],
                routing_key=m["routing_key"],
                payload=data,
                properties=dict(props) if isinstance(props, dict) else {},
                redelivered=bool(m["redelivered"]),
                message_count=int(m.get("message_count", 0)),
            )
        )
    return out


def publish(
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: Mapping[str, Any] | None = None,
    vhost: str = DEFAULT_VHOST,
) -> bool:
    """basic.publish through the API; returns whether the message was routed to at least one queue.

    ``exchange`` "" (or "amq.default") is the default exchange.  ``properties`` are AMQP basic properties
    (``delivery_mode``, ``headers``, ``content_type``, ...).  Header values are JSON-typed: Python ints
    become AMQP long ints, so you cannot publish a byte-typed ``x-mqtt-publish-qos`` this way.
    """
    req = {
        "properties": dict(properties or {}),
        "routing_key": routing_key,
        "payload": base64.b64encode(body).decode(),
        "payload_encoding": "base64",
    }
    resp = request("POST", f"/api/exchanges/{_q(vhost)}/{_api_exchange(exchange)}/publish", req)
    return bool(resp["routed"])


# --- connections -------------------------------------------------------------------------------------------


def connections() -> list[dict[str, Any]]:
    """``GET /api/connections``.  Useful keys: ``name``, ``protocol`` ('MQTT 3.1.1', 'STOMP 1.2',
    'Web STOMP 1.2', 'AMQP 0-9-1'), ``type`` ('direct' for MQTT/STOMP), ``user``, ``vhost``,
    ``client_properties`` (MQTT: ``{'client_id': ..., 'product': 'MQTT client'}``).

    A new connection shows up only after the stats lag (up to ~1 s here, see the module docstring; poll with
    ``wait_for``); a closed one disappears at once."""
    result: list[dict[str, Any]] = request("GET", "/api/connections")
    return result


def mqtt_connection(client_id: str) -> dict[str, Any] | None:
    """The connection whose MQTT client id is ``client_id``, or None."""
    for c in connections():
        if (c.get("client_properties") or {}).get("client_id") == client_id:
            return c
    return None


def close_connection(name: str, reason: str = "closed by contract test") -> bool:
    """Force-close a connection by its ``name`` (from ``connections()``); False when it is already gone."""
    return _delete(f"/api/connections/{_q(name)}", headers={"X-Reason": reason})
