"""Messages as the routing core sees them: body, AMQP basic properties, where they were published."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import PreconditionFailed

#: The AMQP 0-9-1 basic properties, in the order of the spec.
PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)
_INT_PROPERTIES = {"delivery_mode", "priority", "timestamp"}


def check_properties(properties: dict[str, Any] | None) -> dict[str, Any]:
    """Validate basic properties and drop the ones set to None; raise ValueError on anything else
    (PreconditionFailed, as RabbitMQ does, for an expiration it would refuse)."""
    if not properties:
        return {}
    out: dict[str, Any] = {}
    for key, value in properties.items():
        if key not in PROPERTY_NAMES:
            raise ValueError(f"unknown AMQP basic property {key!r}; custom headers go under 'headers'")
        if value is None:
            continue
        if key == "headers":
            if not isinstance(value, dict):
                raise ValueError("'headers' must be a dict")
            value = dict(value)
        elif key in _INT_PROPERTIES:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{key!r} must be an int")
        elif not isinstance(value, str):
            raise ValueError(f"{key!r} must be a str")
        out[key] = value
    if "expiration" in out:
        parse_expiration(out["expiration"])
    return out


_INTEGER_PREFIX = re.compile(r"[+-]?[0-9]+")


def parse_expiration(value: str) -> int:
    """Per-message TTL in ms, read as ``rabbit_basic:parse_expiration/1`` does (Erlang's
    ``string:to_integer``: an optional sign, then digits, nothing after). RabbitMQ refuses the publish
    with PRECONDITION_FAILED otherwise."""
    match = _INTEGER_PREFIX.match(value)
    if match is None:
        raise PreconditionFailed(f"invalid expiration '{value}': no_integer")
    rest = value[match.end():]
    if rest:
        raise PreconditionFailed(f'invalid expiration \'{value}\': {{leftover_string,"{rest}"}}')
    ttl = int(match.group())
    if ttl < 0:
        raise PreconditionFailed(f"invalid expiration '{value}': {{value_negative,{ttl}}}")
    return ttl


@dataclass(eq=False, slots=True)
class Message:
    """One published message. ``log_id`` links it to its entry in the broker's message log."""

    exchange: str
    routing_key: str
    body: bytes
    properties: dict[str, Any] = field(default_factory=dict)
    log_id: int = 0
    #: The properties as the publishing protocol encoded them (AMQP: the content header's flags and property
    #: list), passed on verbatim to consumers of the same protocol, as RabbitMQ does; None: encode afresh.
    wire: bytes | None = None

    @property
    def headers(self) -> dict[str, Any]:
        headers = self.properties.get("headers")
        return headers if isinstance(headers, dict) else {}

    @property
    def persistent(self) -> bool:
        return self.properties.get("delivery_mode") == 2


@dataclass(eq=False, slots=True)
class Delivery:
    """A message handed to a consumer or returned by ``get``."""

    message: Message
    queue: str
    delivery_tag: int
    redelivered: bool
    consumer_tag: str | None = None
    message_count: int = 0  # for basic.get: messages left in the queue

    @property
    def exchange(self) -> str:
        return self.message.exchange

    @property
    def routing_key(self) -> str:
        return self.message.routing_key

    @property
    def body(self) -> bytes:
        return self.message.body

    @property
    def properties(self) -> dict[str, Any]:
        return self.message.properties

    @property
    def headers(self) -> dict[str, Any]:
        return self.message.headers

    def __repr__(self) -> str:
        return (
            f"<Delivery queue={self.queue!r} exchange={self.exchange!r} routing_key={self.routing_key!r} "
            f"body={self.body[:60]!r} redelivered={self.redelivered}>"
        )
