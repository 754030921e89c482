"""A sans-I/O HTTP/1.1 server session on h11: keep-alive, pipelining, chunked bodies, size limits.

One :class:`HttpSession` is one client connection. It parses requests with h11 and hands each complete one to
its :class:`App`, in order: a pipelined request waits in h11's buffer until the response before it is written.
An app answers with a :class:`Response`, or with a :class:`Pending` that it completes later (a long poll); the
connection then reads no further request until that response is out. Malformed HTTP (whatever h11 refuses)
gets a 400, or the status h11 suggests, and only that connection closes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import h11

from ..base import ConnectionInfo, Session, SessionHost

#: What a client may send before its body: request line and headers (h11's own default is 16 KiB).
DEFAULT_MAX_HEADER = 16 * 1024
#: A request body past this gets 413. RabbitMQ's management listener refuses bodies over 20 MB by default.
DEFAULT_MAX_BODY = 20_000_000

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable", 408: "Request Timeout",
    409: "Conflict", 411: "Length Required", 413: "Payload Too Large", 414: "URI Too Long",
    415: "Unsupported Media Type", 424: "Failed Dependency", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


logger = logging.getLogger("fakebroker")

# The strict subset of HTTP/1.1 the fast path takes (h11's grammar, narrowed): known methods, a visible-ASCII
# target, tokens for header names, values of visible characters with inner spaces, no obs-fold.
_REQUEST_LINE = re.compile(rb"(GET|HEAD|POST|PUT|DELETE) ([\x21-\x7e]+) HTTP/1\.1")
_HEADER_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+"
                           rb"[\x21-\x7e\x80-\xff]+)*)?)[ \t]*")
_NOT_FAST = ("transfer-encoding", "expect", "upgrade", "te")
_DIGITS = re.compile(rb"[0-9]{1,15}")


@dataclass
class Request:
    """One complete request. ``path`` and ``query`` are raw (still %-encoded); header names are lower case."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]
    http_version: str = "1.1"

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: Close the connection once this response is written.
    close: bool = False

    @classmethod
    def text(cls, status: int, text: str, headers: list[tuple[str, str]] | None = None,
             close: bool = False) -> Response:
        """A plain-text response; a line break is added so that curl's output ends cleanly."""
        body = text if text.endswith("\n") or not text else text + "\n"
        return cls(status, body.encode(), [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])], close)

    @classmethod
    def json(cls, status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> Response:
        # A name that is not valid UTF-8 (STOMP keeps such bytes as lone surrogates) goes out as its JSON escape
        # (\udcff): refusing it would break every listing that includes it, for the rest of the broker's life.
        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "backslashreplace")
        return cls(status, body, [("Content-Type", "application/json"), *(headers or [])])


class Pending:
    """A response that an app completes later (:meth:`resolve`); ``on_cancel`` runs if the client goes away
    first, so that the app can drop its hooks and timers."""

    def __init__(self, on_cancel: Callable[[], None] | None = None) -> None:
        self.response: Response | None = None
        self.on_cancel = on_cancel
        self._deliver: Callable[[Response], None] | None = None
        self.cancelled = False

    def resolve(self, response: Response) -> None:
        if self.response is not None or self.cancelled:
            return
        self.response = response
        if self._deliver is not None:
            self._deliver(response)

    def cancel(self) -> None:
        if self.response is None and not self.cancelled:
            self.cancelled = True
            if self.on_cancel is not None:
                self.on_cancel()


class App(Protocol):
    """What answers the requests of one listener."""

    def handle(self, request: Request, session: HttpSession) -> Response | Pending: ...


class HttpSession(Session):
    """One HTTP/1.1 connection. ``app`` answers its requests; ``max_body`` and ``max_header`` bound them."""

    protocol = "http"

    def __init__(self, info: ConnectionInfo, host: SessionHost, app: App, *, max_body: int = DEFAULT_MAX_BODY,
                 max_header: int = DEFAULT_MAX_HEADER, server: str = "fakebroker") -> None:
        super().__init__(info)
        self.host = host
        self.app = app
        self.max_body = max_body
        self.server = server
        self.max_header = max_header
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header)
        self._head: h11.Request | None = None
        self._body = bytearray()
        self._pending: Pending | None = None
        self._head_only = False  # the current request is a HEAD: the response goes without its body
        #: Answer plainly well-formed requests without h11's events (see :meth:`_fast_path`).
        self.fast = True
        self._fast_pending = False  # the pending answer is for a request the fast path took
        self.requests = 0
        #: Vhost for ``broker.clients`` (the one of the last request that named one).
        self.vhost: str | None = None

    # -- input ----------------------------------------------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        if self.fast and self._pending is None and self._h11.their_state is h11.IDLE \
                and self._h11.our_state is h11.IDLE and not self._h11.trailing_data[0]:
            data = self._fast_path(data)
            if not data or self.state != "open":
                return
        self._h11.receive_data(data)
        self._pump()

    def _fast_path(self, data: bytes) -> bytes:
        """Answer the complete, plainly well-formed keep-alive requests at the head of ``data`` without h11's
        events; return the rest. A request is taken here only when it is in a strict subset of what h11 accepts
        (HTTP/1.1, one Host, at most one Content-Length, no Transfer-Encoding, Expect, Upgrade or Connection other
        than keep-alive, the body complete), and means the same to both; anything else, from its first byte on,
        goes to h11, which then also answers malformed input."""
        while data:
            end = data.find(b"\r\n\r\n", 0, self.max_header)
            if end < 0:
                return data
            lines = data[:end].split(b"\r\n")
            request_line = _REQUEST_LINE.fullmatch(lines[0])
            if request_line is None:
                return data
            headers: dict[str, str] = {}
            length = 0
            for line in lines[1:]:
                field = _HEADER_FIELD.fullmatch(line)
                if field is None:
                    return data
                name = field[1].lower().decode("latin-1")
                value = field[2].decode("latin-1")
                if name in _NOT_FAST or (name == "connection" and value.lower() != "keep-alive"):
                    return data
                if name in headers:
                    if name in ("content-length", "host"):
                        return data
                    headers[name] = f"{headers[name]}, {value}"
                    continue
                if name == "content-length":
                    if _DIGITS.fullmatch(field[2]) is None:  # ASCII digits only: str.isdigit() takes "²"
                        return data
                    length = int(value)
                headers[name] = value
            total = end + 4 + length
            if "host" not in headers or length > self.max_body or len(data) < total:
                return data
            self._established = True
            method = request_line[1].decode("ascii")
            self._head_only = method == "HEAD"
            request = Request(method, request_line[2].decode("latin-1"), headers, data[end + 4:total],
                              self.info.peer)
            data = data[total:]
            answer = self._call_app(request)
            if isinstance(answer, Pending) and answer.response is None:
                self._pending = answer
                self._fast_pending = True
                answer._deliver = self._on_resolved
                return data  # h11 holds the rest until the answer is out
            self._write_fast(answer.response if isinstance(answer, Pending) else answer)  # type: ignore[arg-type]
            if self.state != "open":
                return b""
        return data

    def _write_fast(self, response: Response) -> None:
        out = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, '')}\r\n"]
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection"):
                out.append(f"{name}: {value}\r\n")
        out.append(f"Server: {self.server}\r\n")
        bodyless = response.status in (204, 304)
        if not bodyless:
            out.append(f"Content-Length: {len(response.body)}\r\n")
        if response.close:
            out.append("Connection: close\r\n")
        out.append("\r\n")
        head = "".join(out).encode("latin-1")
        self.send(head if bodyless or self._head_only else head + response.body)
        if response.close:
            self.request_close()

    def _on_connection_lost(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.cancel()

    def _pump(self) -> None:
        """Read events until one request is complete and answered, or more bytes are needed."""
        while self.state == "open" and self._pending is None:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(exc.error_status_hint, f"malformed HTTP request: {exc}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                if not self._start(event):
                    return
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self.max_body:
                    self._fail(413, f"request body larger than {self.max_body} bytes")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self.request_close()
                return

    def _start(self, event: h11.Request) -> bool:
        # h11 bounds a head that arrives in pieces; one that arrives whole is measured here.
        size = len(event.method) + len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers) + 14
        if size > self.max_header:
            self._fail(431, f"request line and headers larger than {self.max_header} bytes")
            return False
        # A request line and headers make the connection established: the handshake timeout no longer applies.
        self._established = True
        self._head = event
        self._body = bytearray()
        self._head_only = event.method == b"HEAD"
        for name, value in event.headers:
            if name == b"content-length" and int(value) > self.max_body:
                # Refused before reading the body; the client may still be sending it, so close after.
                self._fail(413, f"request body of {int(value)} bytes is larger than {self.max_body} bytes")
                return False
        if self._h11.client_is_waiting_for_100_continue:
            self._h11_send(h11.InformationalResponse(status_code=100, headers=[]))
        return True

    def _dispatch(self) -> None:
        head = self._head
        assert head is not None
        self._head = None
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        request = Request(head.method.decode("ascii"), head.target.decode("latin-1"), headers, bytes(self._body),
                          self.info.peer, head.http_version.decode("ascii"))
        self._body = bytearray()
        answer = self._call_app(request)
        if isinstance(answer, Pending):
            if answer.response is not None:
                self._respond(answer.response)
                return
            self._pending = answer
            answer._deliver = self._on_resolved
            return
        self._respond(answer)

    def _call_app(self, request: Request) -> Response | Pending:
        self.requests += 1
        try:
            return self.app.handle(request, self)
        except Exception as exc:  # a bug in a handler costs this request a 500, never the broker
            logger.exception("fakebroker: HTTP handler failed on %s %s", request.method, request.target)
            return Response.text(500, f"internal error in fakebroker: {exc!r}", close=True)

    def _on_resolved(self, response: Response) -> None:
        self._pending = None
        if self.state != "open":
            return
        if self._fast_pending:
            self._fast_pending = False
            self._write_fast(response)
            if self.state != "open":
                return
            rest, _ = self._h11.trailing_data
            if rest:  # what came after the long poll: start again from the fast path
                self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_header)
                self._on_data(rest)
            return
        self._respond(response)
        self._pump()

    # -- output ---------------------------------------------------------------------------------------
    def _respond(self, response: Response) -> None:
        headers = [(k, v) for k, v in response.headers if k.lower() not in ("content-length", "connection")]
        headers.append(("Server", self.server))
        if response.status not in (204, 304) and response.status >= 200:
            headers.append(("Content-Length", str(len(response.body))))
        if response.close:
            headers.append(("Connection", "close"))
        try:
            self._h11_send(h11.Response(status_code=response.status, headers=headers,
                                        reason=REASONS.get(response.status, "").encode()))
            if response.body and not self._head_only and response.status not in (204, 304):
                self._h11_send(h11.Data(data=response.body))
            self._h11_send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            self.request_close("could not frame the response")
            return
        if response.close or self._h11.our_state is h11.MUST_CLOSE:
            self.request_close()
            return
        try:
            self._h11.start_next_cycle()
        except h11.LocalProtocolError:
            # The request's body was not read to its end (a response sent early): the stream is out of step.
            self.request_close()

    def _h11_send(self, event: Any) -> None:
        data = self._h11.send(event)
        if data:
            self.send(data)

    def _fail(self, status: int, reason: str) -> None:
        """Answer ``status`` with ``reason`` as text, then close this connection only."""
        body = (reason + "\n").encode()
        head = (f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nServer: {self.server}\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        # Written directly: after a protocol error h11 may no longer be in a state that lets it frame one.
        self.send(head + body)
        self.request_close(reason)

    def describe(self) -> dict[str, Any]:
        return {"vhost": self.vhost, "requests": self.requests, "subscriptions": {}}
