"""The contract suite's management API client: one request to either backend's management listener."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests
from contractlib import Backend

AUTH = ("guest", "guest")
JSON = {"Content-Type": "application/json"}


def q(segment: str) -> str:
    return quote(segment, safe="")


def api(backend: Backend, method: str, path: str, body: Any = None, *, auth: tuple[str, str] | None = AUTH,
        data: bytes | None = None, headers: dict[str, str] | None = None) -> requests.Response:
    """One request; ``{vhost}`` in ``path`` is this test's vhost, quoted."""
    url = backend.management_url + path.replace("{vhost}", q(backend.vhost))
    payload = data if data is not None else (None if body is None else json.dumps(body).encode())
    return requests.request(method, url, data=payload, auth=auth, timeout=10,
                            headers={**(JSON if payload is not None else {}), **(headers or {})})


def error(r: requests.Response) -> tuple[int, Any, Any]:
    body = r.json()
    return r.status_code, body["error"], body["reason"]


def put_queue(backend: Backend, name: str, **body: Any) -> requests.Response:
    return api(backend, "PUT", f"/api/queues/{{vhost}}/{q(name)}", body)


def publish(backend: Backend, exchange: str, routing_key: str, payload: str, properties: dict[str, Any] | None = None,
            encoding: str = "string") -> requests.Response:
    return api(backend, "POST", f"/api/exchanges/{{vhost}}/{q(exchange)}/publish",
               {"routing_key": routing_key, "payload": payload, "payload_encoding": encoding,
                "properties": properties or {}})


def get(backend: Backend, queue: str, count: int = 1, ackmode: str = "ack_requeue_false",
        encoding: str = "auto", **extra: Any) -> requests.Response:
    return api(backend, "POST", f"/api/queues/{{vhost}}/{q(queue)}/get",
               {"count": count, "ackmode": ackmode, "encoding": encoding, **extra})
