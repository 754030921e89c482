"""statelessd: fire-and-forget publishing over HTTP, as gmr/statelessd (Tornado + pika) behaves.

``POST /<vhost>/<exchange>/<routing-key>`` with Basic credentials publishes one message; the form fields (query
string and form body) carry the body and the AMQP properties. statelessd does not check the credentials per
request: each ``vhost:user`` pair gets one AMQP connection, opened with the first request's password, and a
request is answered before RabbitMQ has judged it. So:

- the first request of a pair is buffered and answered 204 while that connection opens; if RabbitMQ refuses it
  (wrong password, unknown vhost, no access), the pair goes into the *deny* state: 424 for every request, and a
  reconnect every 5 s on the broker clock, 10 times, then never again. A reconnect that succeeds publishes what
  was buffered and clears the deny state.
- a publish that RabbitMQ refuses on the channel (no such exchange, an internal exchange, a bad expiration, a
  ``user_id`` that is not the user) still got its 204: the message is lost and the channel reopened.

``GET /stats`` answers statelessd's JSON: request counters, resource usage and per-pair connection counters.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import resource
import socket
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from ...clock import TimerHandle
from ...errors import ChannelError
from ..base import SessionHost
from .router import DecodeError, decode_segment, parse_form, split_path
from .server import HttpSession, Request, Response

logger = logging.getLogger("fakebroker")

#: statelessd's reconnect delay (s) and attempts before it gives up on a ``vhost:user`` pair.
RECONNECT_DELAY = 5.0
MAX_ATTEMPTS = 10
REALM = "Basic realm=statelessd"
#: The form fields statelessd reads, beside ``body``.
PROPERTIES = ("app_id", "content_encoding", "content_type", "correlation_id", "delivery_mode", "expire",
              "headers", "message_id", "priority", "reply_to", "timestamp", "type", "user_id")
#: Integer fields and the range an AMQP basic property of that type holds.
INT_PROPERTIES = {"delivery_mode": 255, "priority": 255, "timestamp": 2**64 - 1}
_INTEGER = re.compile(r"[+-]?[0-9]+")
# Tornado's get_argument() replaces these with spaces (and strips the value) before statelessd sees it.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f]")


class BadRequest(Exception):
    """A request statelessd cannot turn into a publish: answered 400 with this text."""


@dataclass
class Publisher:
    """statelessd's AMQP connection for one ``vhost:user`` pair."""

    vhost: str
    user: str
    password: str
    connected: bool = False
    deny: bool = False
    attempts: int = 0
    buffer: list[tuple[str, str, bytes, dict[str, Any]]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("connection_opened", "connection_closed", "channel_opened", "channel_closed", "published"), 0))
    timer: TimerHandle | None = None

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {
            # statelessd reports ``channel and channel.is_open``: null while it has no channel.
            "connected": True if self.connected else None,
            "connections": {"opened": c["connection_opened"], "closed": c["connection_closed"]},
            "channels": {"opened": c["channel_opened"], "closed": c["channel_closed"]},
            "publishes": c["published"],
            "queue_size": len(self.buffer),
        }


class StatelessdState:
    """One statelessd process: its request counters and its connections (one per node, restarts included)."""

    def __init__(self) -> None:
        self.counters: dict[str, float] = {}
        self.publishers: dict[str, Publisher] = {}
        self.port = 0

    def count(self, key: str, value: float = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + value

    def reset(self) -> None:
        for publisher in self.publishers.values():
            if publisher.timer is not None:
                publisher.timer.cancel()
        self.__init__()  # type: ignore[misc]


class Statelessd:
    """The statelessd listener's application."""

    def __init__(self, host: SessionHost) -> None:
        self.host = host
        self.state = host.state(StatelessdState)

    # -- requests -------------------------------------------------------------------------------------
    def handle(self, request: Request, session: HttpSession) -> Response:
        start = time.perf_counter()
        if not self.state.port:
            self.state.port = session.info.local[1]
        segments = split_path(request.path)
        if request.path == "/":
            # statelessd's dashboard: its counters, refreshed from /stats.
            if request.method != "GET":  # Tornado answers 405 to HEAD where only get() is defined
                return self._finish(request, start, _method_not_allowed("GET"))
            from .page import DASHBOARD

            return self._finish(request, start, Response(200, DASHBOARD.encode(),
                                                         [("Content-Type", "text/html; charset=utf-8")]))
        if request.path == "/stats":
            if request.method != "GET":  # Tornado answers 405 to HEAD where only get() is defined
                return self._finish(request, start, _method_not_allowed("GET"))
            return self._finish(request, start, Response.json(200, self.stats()))
        if len(segments) != 3 or not all(segments):
            return Response.text(404, f"no such resource: {request.path!r} (statelessd publishes to "
                                      "/<vhost>/<exchange>/<routing-key>, each segment non-empty)")
        if request.method != "POST":
            return self._finish(request, start, _method_not_allowed("POST"))
        try:
            response = self._publish(request, segments, session)
        except BadRequest as exc:
            response = Response.text(400, str(exc))
        return self._finish(request, start, response)

    def _finish(self, request: Request, start: float, response: Response) -> Response:
        self.state.count(f"method.{request.method}")
        self.state.count(f"response.{response.status}")
        self.state.count("processing_time", time.perf_counter() - start)
        return response

    def _publish(self, request: Request, segments: list[str], session: HttpSession) -> Response:
        credentials = _basic_credentials(request.header("authorization"))
        if credentials is None:
            return Response.text(401, "statelessd needs HTTP Basic credentials (user and password of the broker)",
                                 headers=[("WWW-Authenticate", REALM)])
        user, password = credentials
        try:
            vhost, exchange, routing_key = (decode_segment(s) for s in segments)
        except DecodeError as exc:
            raise BadRequest(str(exc)) from None
        session.vhost, session.user = vhost, user
        publisher, new = self._publisher(vhost, user, password)
        # statelessd reads the fields only after picking (or opening) the pair's connection.
        try:
            body, properties = self._fields(request)
        except BadRequest:
            if new:
                self._connect(publisher)
            raise
        if publisher.deny:
            return Response.text(424, f"publishing as {user!r} to vhost {vhost!r} is denied: the connection to "
                                      f"the broker failed (attempts: {publisher.attempts})")
        if publisher.connected:
            self._send(publisher, exchange, routing_key, body, properties)
        else:
            publisher.buffer.append((exchange, routing_key, body, properties))
        if new:
            self._connect(publisher)
        return Response(204)

    def _fields(self, request: Request) -> tuple[bytes, dict[str, Any]]:
        values: dict[str, str] = {}
        try:
            pairs = parse_form(request.query) + _body_fields(request)
        except DecodeError as exc:
            raise BadRequest(str(exc)) from None
        for name, value in pairs:  # the last value of a field wins, the body's after the query string's
            values[name] = _CONTROL.sub(" ", value).strip()
        properties: dict[str, Any] = {}
        for key in PROPERTIES:
            value = values.get(key, "")
            if not value:  # statelessd leaves empty fields out
                continue
            if key in INT_PROPERTIES:
                if not _INTEGER.fullmatch(value) or not 0 <= int(value) <= INT_PROPERTIES[key]:
                    raise BadRequest(f"{key} must be an integer from 0 to {INT_PROPERTIES[key]}, not {value!r}")
                properties[key] = int(value)
            elif key == "expire":
                properties["expiration"] = value
            elif key == "headers":
                try:
                    table = json.loads(value)
                except ValueError:
                    table = None
                if not isinstance(table, dict):
                    raise BadRequest(f"headers must be a JSON object (an AMQP table), not {value!r}")
                properties["headers"] = table
            else:
                properties[key] = value
        return values.get("body", "").encode(), properties

    # -- the pair's AMQP connection -------------------------------------------------------------------
    def _publisher(self, vhost: str, user: str, password: str) -> tuple[Publisher, bool]:
        key = f"{vhost}:{user}"
        publisher = self.state.publishers.get(key)
        if publisher is not None:
            return publisher, False
        publisher = self.state.publishers[key] = Publisher(vhost, user, password)
        return publisher, True

    def _connect(self, publisher: Publisher) -> None:
        """One connection attempt; the pair's first one happens once its first request has been buffered."""
        if publisher.connected:
            return
        model = self.host.model
        if (publisher.vhost in model.vhosts and model.authenticate(publisher.user, publisher.password)
                and model.can_access(publisher.user, publisher.vhost)):
            publisher.connected, publisher.deny, publisher.attempts = True, False, 0
            publisher.counters["connection_opened"] += 1
            publisher.counters["channel_opened"] += 1
            while publisher.buffer and publisher.connected:
                self._send(publisher, *publisher.buffer.pop(0))
            return
        publisher.deny = True
        if publisher.attempts < MAX_ATTEMPTS:
            publisher.timer = self.host.clock.call_later(RECONNECT_DELAY, self._reconnect, publisher)
        else:
            logger.warning("statelessd: giving up on %s:%s after %d attempts", publisher.vhost, publisher.user,
                           publisher.attempts)

    def _reconnect(self, publisher: Publisher) -> None:
        publisher.timer = None
        publisher.attempts += 1
        self._connect(publisher)

    def _send(self, publisher: Publisher, exchange: str, routing_key: str, body: bytes,
              properties: dict[str, Any]) -> None:
        model = self.host.model
        if publisher.vhost not in model.vhosts:
            # The vhost was deleted: RabbitMQ closed the connection. statelessd buffers and reconnects in 5 s.
            publisher.connected = False
            publisher.counters["connection_closed"] += 1
            publisher.buffer.append((exchange, routing_key, body, properties))
            publisher.timer = self.host.clock.call_later(RECONNECT_DELAY, self._reconnect, publisher)
            return
        publisher.counters["published"] += 1
        try:
            user_id = properties.get("user_id")
            if user_id is not None and user_id != publisher.user:
                raise ChannelError(f"user_id property set to '{user_id}' but authenticated user was "
                                   f"'{publisher.user}'")
            model.publish(exchange, routing_key, body, properties, vhost=publisher.vhost, protocol="http")
        except ChannelError as exc:
            # The channel closes; statelessd reopens it. Its client got a 204 already: the message is lost.
            publisher.counters["channel_closed"] += 1
            publisher.counters["channel_opened"] += 1
            logger.warning("statelessd: message to %r on vhost %r lost: %s", exchange, publisher.vhost, exc)

    # -- /stats ---------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "host": socket.gethostname(),
            "port": self.state.port,
            "timestamp": int(time.time()),
            "requests": dict(self.state.counters),
            "block": {"input": usage.ru_inblock, "output": usage.ru_oublock},
            "context_switches": usage.ru_nvcsw + usage.ru_nivcsw,
            "cpu_time": {"user": usage.ru_utime, "system": usage.ru_stime},
            "memory_usage": usage.ru_maxrss,
            "page_faults": {"minor": usage.ru_minflt, "major": usage.ru_majflt},
            "page_size": os.sysconf("SC_PAGE_SIZE"),
            "signals_received": usage.ru_nsignals,
            "swap_outs": usage.ru_nswap,
            "connections": {key: p.stats() for key, p in self.state.publishers.items()},
        }


def _method_not_allowed(allowed: str) -> Response:
    return Response.text(405, f"method not allowed here; use {allowed}", headers=[("Allow", allowed)])


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """User and password of a Basic ``Authorization`` header; None when absent or malformed. The password is
    everything after the first colon (RFC 7617), so it may contain colons."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except ValueError:  # bad base64 (binascii.Error), non-ASCII header text, or not UTF-8 once decoded
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def _body_fields(request: Request) -> list[tuple[str, str]]:
    """The form fields of the body, as Tornado reads them: url-encoded or multipart; other bodies have none."""
    ctype = (request.header("content-type") or "").strip()
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return parse_form(request.body)
    if media == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + request.body)
        out = []
        for part in message.iter_parts() if message.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str) or part.get_filename() is not None:
                continue  # Tornado keeps uploaded files apart from the arguments
            payload = part.get_payload(decode=True)
            try:
                out.append((name, payload.decode("utf-8") if isinstance(payload, bytes) else ""))
            except UnicodeDecodeError as exc:
                raise DecodeError(f"invalid UTF-8 in form field {name!r}") from exc
        return out
    return []
