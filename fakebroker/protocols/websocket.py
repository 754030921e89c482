"""WebSocket transport as a sans-I/O session wrapper (RabbitMQ's web_mqtt and web_stomp).

:class:`WebSocketSession` speaks the server side of RFC 6455 with wsproto and carries an inner protocol
:class:`~fakebroker.protocols.base.Session` (MQTT, STOMP) inside WebSocket messages. For the inner session
the data of client messages is one byte stream (text or binary, fragments fed as they come); each chunk it
sends becomes one WebSocket message, as RabbitMQ sends one message per MQTT packet or STOMP frame.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import RemoteProtocolError

from .base import ConnectionInfo, Session, SessionState

_REASONS = {400: "Bad Request", 404: "Not Found", 426: "Upgrade Required"}


class WebSocketSession(Session):
    """Server side of one WebSocket connection, wrapping the protocol session created on upgrade.

    ``subprotocols`` is the server's preference order: the first one the client offered is selected. When
    the client offers none of them the upgrade succeeds without a protocol header, unless
    ``require_subprotocol`` is set (then HTTP 400, as web_mqtt does from RabbitMQ 3.12). A wrong path gives
    404 and a request that is not a WebSocket upgrade 426. When the inner session asks to close, the socket
    gets a close frame (1000, ``close_reason_on_inner_close``) after its last output.
    """

    def __init__(
        self,
        info: ConnectionInfo,
        inner_factory: Callable[[ConnectionInfo], Session],
        *,
        path: str = "/ws",
        subprotocols: Sequence[str] = (),
        require_subprotocol: bool = False,
        frame_type: Literal["binary", "text"] = "binary",
        close_reason_on_inner_close: str | None = None,
        compress: bool = False,
    ) -> None:
        self.inner: Session | None = None  # before super().__init__: the property setters below use it
        self._client_id: str | None = None
        self._user: str | None = None
        self._close_reason: str | None = None
        super().__init__(info)
        self._inner_factory = inner_factory
        self._path = path
        self._subprotocols = tuple(subprotocols)
        self._require_subprotocol = require_subprotocol
        self._frame_type = frame_type
        self._close_frame_reason = close_reason_on_inner_close
        # permessage-deflate when the client offers it (Cowboy's compress option, on in RabbitMQ's web plugins).
        self._compress = compress
        self._ws = WSConnection(ConnectionType.SERVER)
        self._head = bytearray()  # the raw HTTP request, kept until the handshake is over
        self.subprotocol: str | None = None

    # -- identity delegated to the inner session -----------------------------------------------------
    @property
    def client_id(self) -> str | None:
        return self.inner.client_id if self.inner is not None else self._client_id

    @client_id.setter
    def client_id(self, value: str | None) -> None:
        if self.inner is not None:
            self.inner.client_id = value
        else:
            self._client_id = value

    @property
    def user(self) -> str | None:
        return self.inner.user if self.inner is not None else self._user

    @user.setter
    def user(self, value: str | None) -> None:
        if self.inner is not None:
            self.inner.user = value
        else:
            self._user = value

    @property
    def close_reason(self) -> str | None:
        inner = self.inner.close_reason if self.inner is not None else None
        return inner or self._close_reason

    @close_reason.setter
    def close_reason(self, value: str | None) -> None:
        self._close_reason = value

    @property
    def state(self) -> SessionState:
        """``closing`` once this adapter or the inner session asked to close the connection."""
        if self._state == "open" and self.inner is not None and self.inner.close_requested:
            return "closing"
        return self._state

    @property
    def established(self) -> bool:
        """Established when the protocol inside is: an upgrade alone does not count."""
        return self.inner is not None and self.inner.established

    def describe(self) -> dict[str, Any]:
        fields = self.inner.describe() if self.inner is not None else {}
        return {**fields, "transport": "websocket", "subprotocol": self.subprotocol}

    # -- runtime-facing API ----------------------------------------------------------------------------
    def data_to_send(self, max_bytes: int | None = None) -> bytes:
        self._pump()
        return super().data_to_send(max_bytes)

    def output_drained(self) -> None:
        if self.inner is not None:
            self.inner.output_drained()

    # -- input -------------------------------------------------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        handshaking = self._ws.state is ConnectionState.CONNECTING
        if handshaking:
            self._head += data
        elif self.inner is not None:
            # Every byte on the socket (framing, pings) is traffic to a heart-beat monitor, as in RabbitMQ.
            self.inner.transport_received(len(data))
        try:
            self._ws.receive_data(data)
        except (RemoteProtocolError, UnicodeError):
            # wsproto decodes some header values as ASCII or IDNA (Host, Connection, Sec-WebSocket-Protocol):
            # a byte above 0x7f there is a bad request like any other, not a crash.
            self._reject_raw()
            return
        self._handle_events()
        if handshaking and self.inner is not None:
            # Frames the client pipelined behind its request stayed in the HTTP parser's buffer.
            rest = bytes(self._head).partition(b"\r\n\r\n")[2]
            self._head.clear()
            if rest:
                self._ws.receive_data(rest)
                self._handle_events()

    def _handle_events(self) -> None:
        for event in self._ws.events():
            if self.close_requested or self.closed:
                return
            if isinstance(event, Request):
                self._on_request(event)
            elif isinstance(event, TextMessage):
                self._feed(event.data.encode())
            elif isinstance(event, BytesMessage):
                self._feed(bytes(event.data))
            elif isinstance(event, Ping):
                self._emit(event.response())
            elif isinstance(event, CloseConnection):
                # A close frame without the protocol's goodbye is an abrupt end (an MQTT will fires).
                self._emit(event.response())
                self._close_inner()
                self.request_close()

    def _feed(self, data: bytes) -> None:
        if data and self.inner is not None:
            self.inner.receive_data(data)

    def _on_connection_lost(self) -> None:
        self._head = bytearray()
        self._close_inner()  # which unhooks it: its hooks point back here

    def _close_inner(self) -> None:
        if self.inner is not None:
            self.inner.connection_lost()

    # -- handshake ---------------------------------------------------------------------------------------
    def _path_matches(self, target: str) -> bool:
        # Cowboy's router, in front of RabbitMQ's web plugins, ignores a trailing slash: "/ws/" is "/ws".
        path = target.partition("?")[0]
        return path == self._path or path == self._path + "/"

    def _on_request(self, request: Request) -> None:
        if not self._path_matches(request.target):
            self._reject(404)
            return
        offered = set(request.subprotocols)
        chosen = next((p for p in self._subprotocols if p in offered), None)
        if chosen is None and self._require_subprotocol:
            self._reject(400)
            return
        extensions: list[Extension] = [PerMessageDeflate()] if self._compress else []
        self.send(self._ws.send(AcceptConnection(subprotocol=chosen, extensions=extensions)))
        self.subprotocol = chosen
        headers = _parse_head(bytes(self._head))[1]
        inner = self._inner_factory(dataclasses.replace(self.info, transport="websocket", headers=headers))
        inner.wakeup = self._inner_wakeup
        inner.abort_transport = lambda: self.abort_transport()
        inner.output_limit = self.output_limit
        inner.output_backlog = lambda: len(self._out) + len(inner._out)  # type: ignore[method-assign]
        self.protocol = inner.protocol
        self.inner = inner
        if inner.has_output:
            # What the inner session said on creation (SockJS's "o") is a message of its own.
            self._pump()

    def _reject(self, status: int) -> None:
        body = f"{status} {_REASONS[status]}\n".encode()
        headers = [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        out = self._ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
        self.send(out + self._ws.send(RejectData(data=body)))
        self.request_close()

    def _reject_raw(self) -> None:
        """Answer a request wsproto refused (not an upgrade, or not HTTP) with a hand-written response."""
        target, headers = _parse_head(bytes(self._head))
        if target is not None and not self._path_matches(target):
            status = 404
        elif target is not None and headers.get("upgrade", "").lower() != "websocket":
            status = 426
        else:
            status = 400
        body = f"{status} {_REASONS[status]}\n".encode()
        extra = "upgrade: websocket\r\nsec-websocket-version: 13\r\n" if status == 426 else ""
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n{extra}content-type: text/plain\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.send(head.encode() + body)
        self.request_close()

    # -- output ------------------------------------------------------------------------------------------
    def _inner_wakeup(self) -> None:
        # Pull eagerly: keeps frame order with our own control frames and keeps ``_out`` truthful for
        # the runtime's flush() (``has_output``).
        self._pump()
        self.wakeup()

    def _pump(self) -> None:
        """Wrap whatever the inner session produced into one message; close after its last words."""
        inner = self.inner
        if inner is None or self._state == "closed":
            return  # nothing is written after the close
        payload = inner.data_to_send()
        if payload and self._ws.state is ConnectionState.OPEN:
            self._out += self._ws.send(self._message(payload))
        if inner.close_requested and self._ws.state is ConnectionState.OPEN:
            # A session may name another close than the usual (Web STOMP: 1007 on a malformed frame).
            code, reason = getattr(inner, "websocket_close", None) or (1000, self._close_frame_reason)
            self._out += self._ws.send(CloseConnection(code=code, reason=reason or None))

    def _message(self, payload: bytes) -> Event:
        if self._frame_type == "text":
            try:
                return TextMessage(data=payload.decode("utf-8"))
            except UnicodeDecodeError:
                pass
        return BytesMessage(data=payload)

    def _emit(self, event: Event) -> None:
        """Send a control frame after any pending inner output, while the WebSocket still allows it."""
        self._pump()
        if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self.send(self._ws.send(event))


def _parse_head(head: bytes) -> tuple[str | None, dict[str, str]]:
    """Request target and headers (lower-case names, repeated ones joined by ", ") of a raw request."""
    lines = re.split(r"\r?\n", head.partition(b"\r\n\r\n")[0].decode("latin-1"))
    parts = lines[0].split(" ")
    target = parts[1] if len(parts) == 3 else None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return target, headers


__all__ = ["WebSocketSession"]
