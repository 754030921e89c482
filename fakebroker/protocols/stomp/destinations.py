"""STOMP destinations as RabbitMQ's ``rabbit_routing_util`` reads and writes them, and the names it derives."""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

DEST_PREFIXES = ("/exchange", "/topic", "/queue", "/amq/queue", "/reply-queue/")
ALL_DEST_PREFIXES = ("/temp-queue", *DEST_PREFIXES)
# The endpoint kinds as RabbitMQ's error texts print them (Erlang atoms).
_KINDS = {"exchange": "exchange", "queue": "queue", "topic": "topic", "temp-queue": "temp_queue"}


@dataclass(frozen=True)
class Endpoint:
    """``kind``: exchange, queue, amqqueue, topic, temp_queue or reply_queue. ``pattern`` only for exchanges
    (None when the destination has no routing part)."""

    kind: str
    name: str
    pattern: str | None = None

    def routing(self, default_topic_exchange: str = "amq.topic") -> tuple[str, str]:
        """(exchange, routing key) for publishing, or (exchange, binding key) for subscribing."""
        if self.kind == "exchange":
            return self.name, self.pattern or ""
        if self.kind == "topic":
            return default_topic_exchange, self.name
        return "", self.name

    @property
    def key(self) -> str:
        """The name part ``subscription_queue_name`` hashes: the topic, or the exchange's pattern."""
        if self.kind == "exchange":
            return self.pattern or ""
        return self.name


class DestinationError(Exception):
    """``message`` and ``detail``: the ERROR frame RabbitMQ answers with."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(detail)
        self.message = message
        self.detail = detail


def unescape(name: str) -> str:
    return name.replace("%2F", "/")


def _to_url(parts: list[str]) -> str:
    return "/" + "/".join(parts) if parts else ""


def _invalid(kind: str, rest: list[str]) -> DestinationError:
    return DestinationError("Invalid destination", f"'{_to_url(rest)}' is not a valid {kind} destination\n")


def parse_endpoint(destination: str) -> Endpoint:
    """``rabbit_routing_util:parse_endpoint/1``."""
    parts = destination.split("/")
    if len(parts) == 1:
        return Endpoint("queue", unescape(parts[0]))
    if parts[0] == "" and parts[1] in _KINDS:
        kind, rest = _KINDS[parts[1]], parts[2:]
    elif parts[0] == "" and parts[1:3] == ["amq", "queue"]:
        kind, rest = "amqqueue", parts[3:]
    elif parts[0] == "" and parts[1] == "reply-queue" and len(parts) > 2:
        kind, rest = "reply_queue", [destination[len("/reply-queue/"):]]
    else:
        raise DestinationError(
            "Unknown destination",
            f"'{destination}' is not a valid destination.\n"
            f"Valid destination types are: {', '.join(ALL_DEST_PREFIXES)}.\n",
        )
    if kind == "exchange":
        if not rest or rest[0] == "":
            raise _invalid(kind, rest)
        if len(rest) == 1:
            return Endpoint("exchange", unescape(rest[0]))
        if len(rest) == 2:
            return Endpoint("exchange", unescape(rest[0]), unescape(rest[1]))
        raise _invalid(kind, rest)
    if len(rest) == 1 and rest[0]:
        return Endpoint(kind, unescape(rest[0]))
    raise _invalid(kind, rest)


def _escape_destination(text: str) -> str:
    """``rabbit_stomp_util:escape/1``: ``/``, ``%`` and bytes outside 32..127 as ``%XX`` (upper-case hex, per
    byte of the UTF-8 encoding)."""
    if text.isascii() and text.isprintable() and "/" not in text and "%" not in text:
        return text  # the usual routing key: nothing to escape
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        if byte == 0x2F:
            out.append("%2F")
        elif byte == 0x25:
            out.append("%25")
        elif byte < 32 or byte > 127:
            out.append(f"%{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def format_destination(exchange: str, routing_key: str) -> str:
    """The ``destination`` header of a MESSAGE, rebuilt from where the message was published."""
    if exchange == "":
        return "/queue/" + _escape_destination(routing_key)
    if exchange == "amq.topic":
        return "/topic/" + _escape_destination(routing_key)
    if routing_key == "":
        return "/exchange/" + _escape_destination(exchange)
    return "/exchange/" + _escape_destination(exchange) + "/" + _escape_destination(routing_key)


def _erlang_string(text: str) -> bytes:
    """``term_to_binary`` of an Erlang string (a list of bytes, as RabbitMQ holds header values)."""
    raw = text.encode("utf-8", "surrogateescape")
    if not raw:
        return b"j"  # NIL_EXT
    if len(raw) < 65536:
        return b"k" + struct.pack(">H", len(raw)) + raw  # STRING_EXT
    # LIST_EXT of SMALL_INTEGER_EXT elements, then NIL_EXT
    return b"l" + struct.pack(">I", len(raw)) + b"".join(b"a" + bytes([b]) for b in raw) + b"j"


def subscription_queue_name(key: str, subscription_id: str) -> str:
    """A durable subscription's queue: ``stomp-subscription-`` and the base64url MD5 of
    ``term_to_binary({Key, SubscriptionId})``, so the same topic and id find the same queue again."""
    term = b"\x83h\x02" + _erlang_string(key) + _erlang_string(subscription_id)
    digest = hashlib.md5(term).digest()
    return "stomp-subscription-" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
