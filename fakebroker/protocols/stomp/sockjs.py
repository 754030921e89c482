"""Web STOMP through SockJS at ``/stomp``, as RabbitMQ's web_stomp plugin served it before 3.7 (sockjs-erlang).

The Web STOMP listener reads the first request head and hands the connection to one of three sessions:

- a WebSocket upgrade to ``/ws``: raw Web STOMP (:class:`~fakebroker.protocols.websocket.WebSocketSession`);
- a WebSocket upgrade to ``/stomp/<server>/<session>/websocket``: SockJS's ``websocket`` transport;
- any other request under ``/stomp``: SockJS over plain HTTP (``/stomp/info``, the ``xhr`` polling and
  ``xhr_streaming`` transports, ``xhr_send``), with keep-alive.

A SockJS session owns one STOMP session and outlives the HTTP requests that carry it: messages from the client
arrive in ``xhr_send`` requests (or WebSocket messages), messages to it leave through whichever request is
waiting (a poll or a stream). SockJS frames are ``o`` (open), ``h`` (heart-beat, every 25 s of broker clock),
``a[...]`` (a JSON array of messages, one STOMP frame each) and ``c[code,"reason"]`` (close). A session with no
request waiting for 5 s of broker clock is closed. STOMP heart-beats are negotiated but never run over SockJS,
as in RabbitMQ's SockJS endpoint.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import h11

from ...clock import TimerHandle
from ..base import ConnectionInfo, Session, SessionHost, SessionState
from ..websocket import WebSocketSession, _parse_head

PREFIX = "/stomp"
HEARTBEAT_DELAY = 25.0  # sockjs-erlang's heartbeat_delay (s)
DISCONNECT_DELAY = 5.0  # sockjs-erlang's disconnect_delay (s)
RESPONSE_LIMIT = 128 * 1024  # bytes one xhr_streaming response carries before the client must open another
_SESSION_PATH = re.compile(r"^/stomp/([^/.]+)/([^/.]+)/([a-z_]+)$")
_JS = "application/javascript; charset=UTF-8"
_NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
_OPTIONS_PATHS = {"info": "OPTIONS, GET", "xhr": "OPTIONS, POST", "xhr_send": "OPTIONS, POST",
                  "xhr_streaming": "OPTIONS, POST"}


def sockjs_frame(messages: list[str]) -> str:
    """``a[...]``: the messages as a JSON array (non-ASCII escaped, as SockJS clients parse it safely)."""
    return "a" + json.dumps(messages, separators=(",", ":"))


def close_frame(code: int, reason: str) -> str:
    return "c" + json.dumps([code, reason], separators=(",", ":"))


class Receiver:
    """Where a SockJS session's frames go: a waiting poll, a stream, or a WebSocket."""

    def deliver(self, frame: str) -> bool:
        """Write one SockJS frame; return False when this receiver is done (the session must detach it)."""
        raise NotImplementedError

    def finish(self) -> None:
        """The session is done with this receiver (closed, or another receiver took over)."""


class SockJSSession:
    """One SockJS session: a STOMP session and the queue of messages waiting for a receiver."""

    def __init__(self, sid: str, host: SessionHost, info: ConnectionInfo, registry: SockJSRegistry | None) -> None:
        from .session import StompSession

        self.sid = sid
        self.host = host
        self.registry = registry
        self.pending: list[str] = []
        self.receiver: Receiver | None = None
        self.closed_with: str | None = None  # the close frame, once closed
        self.opened = False
        self.stomp = StompSession(replace(info, transport="http"), host)
        self.stomp.wakeup = self._on_stomp_output
        self.stomp.abort_transport = lambda: self.close(1000, "STOMP died")
        self._heartbeat: TimerHandle | None = None
        self._disconnect: TimerHandle | None = None
        self._arm_disconnect()

    # -- receivers ----------------------------------------------------------------------------------
    def attach(self, receiver: Receiver) -> None:
        if self.receiver is not None:
            receiver.deliver(close_frame(2010, "Another connection still open"))
            receiver.finish()
            return
        self.receiver = receiver
        self._cancel(self._disconnect)
        self._disconnect = None
        if not self.opened:
            self.opened = True
            if not receiver.deliver("o"):
                self._detach()
                return
        self._flush()  # what is pending, then the close frame if the session is closed
        if self.receiver is not None and self.closed_with is None:
            self._arm_heartbeat()

    def detach(self, receiver: Receiver) -> None:
        """The receiver's transport went away (the client closed its request)."""
        if self.receiver is receiver:
            self._detach()

    def _detach(self) -> None:
        self.receiver = None
        self._cancel(self._heartbeat)
        self._heartbeat = None
        self._arm_disconnect()

    def _flush(self) -> None:
        receiver = self.receiver
        if receiver is None:
            return
        if self.pending:
            messages, self.pending = self.pending, []
            if not receiver.deliver(sockjs_frame(messages)):
                self._detach()
                receiver.finish()
                return
        if self.closed_with is not None:
            receiver.deliver(self.closed_with)
            self._detach()
            receiver.finish()

    # -- data -----------------------------------------------------------------------------------------
    def receive(self, messages: list[str]) -> None:
        """Messages from the client (``xhr_send`` or a WebSocket message): STOMP bytes, in order."""
        for message in messages:
            if self.closed_with is not None:
                return
            self.stomp.receive_data(message.encode("utf-8", "surrogatepass"))

    def _on_stomp_output(self) -> None:
        data = self.stomp.data_to_send()
        if data:
            # One SockJS message per STOMP frame, as RabbitMQ's SockJS handler sent them.
            self.pending.append(data.decode("utf-8", "replace"))
        if self.stomp.close_requested and self.closed_with is None:
            self.close(1000, "STOMP died")
            return
        self._flush()

    def close(self, code: int = 3000, reason: str = "Go away!") -> None:
        if self.closed_with is not None:
            return
        self.closed_with = close_frame(code, reason)
        self.stomp.connection_lost()
        self._cancel(self._heartbeat)
        self._heartbeat = None
        self._flush()
        self._arm_disconnect()

    # -- timers on the broker clock -----------------------------------------------------------------
    def _arm_heartbeat(self) -> None:
        self._cancel(self._heartbeat)
        self._heartbeat = self.host.clock.call_later(HEARTBEAT_DELAY, self._beat)

    def _beat(self) -> None:
        self._heartbeat = None
        receiver = self.receiver
        if receiver is None or self.closed_with is not None:
            return
        if not receiver.deliver("h"):
            self._detach()
            receiver.finish()
            return
        self._arm_heartbeat()

    def _arm_disconnect(self) -> None:
        self._cancel(self._disconnect)
        self._disconnect = self.host.clock.call_later(DISCONNECT_DELAY, self._expire)

    def _expire(self) -> None:
        """No receiver for the disconnect delay: the session ends (and is forgotten)."""
        self._disconnect = None
        if self.receiver is not None:
            return
        if self.closed_with is None:
            self.closed_with = close_frame(1002, "Connection interrupted")
            self.stomp.connection_lost()
        if self.registry is not None:
            self.registry.sessions.pop(self.sid, None)

    @staticmethod
    def _cancel(timer: TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()


class SockJSRegistry:
    """The node's SockJS sessions by id (the xhr transports find their session across connections)."""

    def __init__(self) -> None:
        self.sessions: dict[str, SockJSSession] = {}

    def close_all(self) -> None:
        """The node goes down (stop, restart): every session ends with its connections."""
        for session in list(self.sessions.values()):
            session.close(1000, "STOMP died")
        self.sessions.clear()


# -- plain HTTP ---------------------------------------------------------------------------------------------
class SockJSHttpSession(Session, Receiver):
    """HTTP/1.1 requests under ``/stomp``, one at a time per connection, with keep-alive."""

    @property
    def protocol(self) -> str:
        """``stomp`` while this connection carries a SockJS session's frames; plain ``http`` otherwise (info,
        xhr_send), so that listings show one STOMP connection per session."""
        return "stomp" if self.__dict__.get("_session") is not None else "http"

    @protocol.setter
    def protocol(self, value: str) -> None:
        pass

    def __init__(self, info: ConnectionInfo, host: SessionHost) -> None:
        super().__init__(info)
        self.host = host
        self.registry = host.state(SockJSRegistry)
        self._http = h11.Connection(h11.SERVER)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._busy: str | None = None  # "xhr" or "xhr_streaming" while a response waits for frames
        self._session: SockJSSession | None = None
        self._streamed = 0
        self._origin = "*"
        self._in_events = False

    # identity: the STOMP session's, for broker.clients
    @property
    def stomp(self) -> Any:
        return self._session.stomp if self._session is not None else None

    @property
    def client_id(self) -> str | None:
        return self.stomp.client_id if self.stomp is not None else None

    @client_id.setter
    def client_id(self, value: str | None) -> None:
        pass  # the STOMP session inside names the client

    @property
    def user(self) -> str | None:
        return self.stomp.user if self.stomp is not None else None

    @user.setter
    def user(self, value: str | None) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        fields = self.stomp.describe() if self.stomp is not None else {}
        return {**fields, "transport": "sockjs", "sockjs_session": self._session.sid if self._session else None}

    def _on_data(self, data: bytes) -> None:
        self._http.receive_data(data)
        self._events()

    def _events(self) -> None:
        if self._in_events:
            return  # the loop below is running further up the stack and will carry on
        self._in_events = True
        try:
            self._event_loop()
        finally:
            self._in_events = False

    def _event_loop(self) -> None:
        while not self.close_requested and not self.closed:
            try:
                event = self._http.next_event()
            except h11.RemoteProtocolError:
                self._plain(400, "Bad Request")
                self.request_close("malformed HTTP request")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request, self._body = event, bytearray()
                self._established = True
            elif isinstance(event, h11.Data):
                self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._handle()
                self._next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self.connection_lost()
                return

    def _next_cycle(self) -> None:
        if self._busy is None and self._http.our_state is h11.DONE and self._http.their_state is h11.DONE:
            self._http.start_next_cycle()
        elif self._busy is None and self._http.our_state is h11.MUST_CLOSE:
            self.request_close()

    # -- responses ----------------------------------------------------------------------------------
    def _cors(self) -> list[tuple[str, str]]:
        return [("Access-Control-Allow-Origin", self._origin), ("Access-Control-Allow-Credentials", "true")]

    def _respond(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        headers = [*headers, ("Content-Length", str(len(body)))]
        out = self._http.send(h11.Response(status_code=status, headers=headers)) or b""
        if body:
            out += self._http.send(h11.Data(data=body)) or b""
        out += self._http.send(h11.EndOfMessage()) or b""
        self.send(out)

    def _plain(self, status: int, text: str) -> None:
        self._respond(status, text.encode(), [("Content-Type", "text/plain; charset=UTF-8"), *self._cors()])

    def _handle(self) -> None:
        request = self._request
        assert request is not None
        target = request.target.decode("latin-1")
        path = target.partition("?")[0]
        method = request.method.decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        origin = headers.get("origin")
        self._origin = origin if origin and origin != "null" else "*"
        if path in (PREFIX, PREFIX + "/"):
            self._respond(200, b"Welcome to SockJS!\n", [("Content-Type", "text/plain; charset=UTF-8")])
            return
        if path == PREFIX + "/info":
            if method == "OPTIONS":
                self._options("info", headers)
            else:
                info = {"websocket": True, "origins": ["*:*"], "cookie_needed": False,
                        "entropy": random.randint(0, 2**32 - 1)}
                self._respond(200, json.dumps(info).encode(), [
                    ("Content-Type", "application/json; charset=UTF-8"), ("Cache-Control", _NO_CACHE),
                    *self._cors()])
            return
        match = _SESSION_PATH.match(path)
        if match is None or match.group(3) not in _OPTIONS_PATHS or match.group(3) == "info":
            self._plain(404, "404 Not Found\n")
            return
        sid, transport = match.group(2), match.group(3)
        if method == "OPTIONS":
            self._options(transport, headers)
        elif method != "POST":
            self._respond(405, b"", [("Allow", "OPTIONS, POST")])
        elif transport == "xhr_send":
            self._xhr_send(sid)
        else:
            self._receive(sid, transport)

    def _options(self, transport: str, headers: dict[str, str]) -> None:
        extra = [("Access-Control-Allow-Headers", headers["access-control-request-headers"])] \
            if "access-control-request-headers" in headers else []
        self._respond(204, b"", [("Cache-Control", "public, max-age=31536000"),
                                 ("Access-Control-Max-Age", "31536000"),
                                 ("Access-Control-Allow-Methods", _OPTIONS_PATHS[transport]), *self._cors(), *extra])

    def _xhr_send(self, sid: str) -> None:
        session = self.registry.sessions.get(sid)
        if session is None:
            self._plain(404, "Not found")
            return
        if not self._body:
            self._plain(500, "Payload expected.")
            return
        try:
            messages = json.loads(bytes(self._body).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._plain(500, "Broken JSON encoding.")
            return
        if isinstance(messages, str):
            messages = [messages]
        if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
            self._plain(500, "Broken JSON encoding.")
            return
        # Answer first: what the STOMP session says goes to the session's receiver, not to this request. (This
        # connection does not become the session's: broker.clients shows the STOMP session on its receiver.)
        self._respond(204, b"", [("Content-Type", "text/plain; charset=UTF-8"), *self._cors()])
        session.receive(messages)

    def _receive(self, sid: str, transport: str) -> None:
        session = self.registry.sessions.get(sid)
        if session is None:
            session = SockJSSession(sid, self.host, self.info, self.registry)
            self.registry.sessions[sid] = session
        self._session = session
        self._busy = transport
        self._streamed = 0
        head = self._http.send(h11.Response(status_code=200, headers=[
            ("Content-Type", _JS), ("Cache-Control", _NO_CACHE), *self._cors()])) or b""
        if transport == "xhr_streaming":
            # The prelude makes browsers hand over the response before it ends.
            head += self._http.send(h11.Data(data=b"h" * 2048 + b"\n")) or b""
        self.send(head)
        session.attach(self)

    # -- Receiver -------------------------------------------------------------------------------------
    def deliver(self, frame: str) -> bool:
        if self._busy is None or self.closed:
            return False
        data = (frame + "\n").encode()
        out = self._http.send(h11.Data(data=data)) or b""
        if self._busy == "xhr":
            self._end_response(out)
            return False
        self._streamed += len(data)
        if self._streamed >= RESPONSE_LIMIT:
            self._end_response(out)
            return False
        self.send(out)
        return True

    def finish(self) -> None:
        if self._busy is not None and not self.closed:
            self._end_response(b"")

    def _end_response(self, out: bytes) -> None:
        self._busy = None
        self.send(out + (self._http.send(h11.EndOfMessage()) or b""))
        if not self._in_events:
            # Ended from elsewhere (a frame, a timer): go on with a request the client sent behind this one.
            self._next_cycle()
            self._events()

    def _on_connection_lost(self) -> None:
        if self._session is not None and self._busy is not None:
            self._busy = None
            self._session.detach(self)
        if self.host.stopping:
            # A SockJS session is not a connection the node drops itself: end them all with the node's.
            self.registry.close_all()


# -- SockJS over WebSocket ----------------------------------------------------------------------------------
class SockJSWebSocketInner(Session, Receiver):
    """The inner session of a WebSocket at ``/stomp/<server>/<session>/websocket``: SockJS frames each way."""

    protocol = "stomp"

    def __init__(self, info: ConnectionInfo, host: SessionHost, sid: str) -> None:
        super().__init__(info)
        self.session = SockJSSession(sid, host, info, None)
        self._buffer = ""
        self.session.attach(self)

    @property
    def established(self) -> bool:
        return self.session.stomp.established

    # The STOMP session inside names the client.
    @property
    def client_id(self) -> str | None:
        session = self.__dict__.get("session")
        return session.stomp.client_id if session is not None else None

    @client_id.setter
    def client_id(self, value: str | None) -> None:
        pass

    @property
    def user(self) -> str | None:
        session = self.__dict__.get("session")
        return session.stomp.user if session is not None else None

    @user.setter
    def user(self, value: str | None) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {**self.session.stomp.describe(), "sockjs_session": self.session.sid}

    def deliver(self, frame: str) -> bool:
        if self.closed:
            return False
        self.send(frame.encode())
        if frame.startswith("c["):
            self.request_close(self.session.stomp.close_reason)
        return True

    def _on_data(self, data: bytes) -> None:
        self._buffer += data.decode("utf-8", "replace")
        try:
            messages = json.loads(self._buffer)
        except ValueError:
            if len(self._buffer) > 4 * 1024 * 1024:
                self.request_close("broken SockJS message")
            return  # a message split across WebSocket frames: wait for the rest
        self._buffer = ""
        if isinstance(messages, str):
            messages = [messages]
        if not isinstance(messages, list):
            return
        self.session.receive([m for m in messages if isinstance(m, str)])

    def _on_connection_lost(self) -> None:
        self.session.detach(self)
        self.session.close(1002, "Connection interrupted")


# -- the listener's front door ------------------------------------------------------------------------------
class WebStompFront(Session):
    """Reads the first request head, then becomes raw Web STOMP, SockJS over WebSocket or SockJS over HTTP."""

    @property
    def protocol(self) -> str:
        delegate = self.__dict__.get("delegate")
        return delegate.protocol if delegate is not None else "stomp"

    @protocol.setter
    def protocol(self, value: str) -> None:
        pass

    def __init__(self, info: ConnectionInfo, host: SessionHost,
                 raw_websocket: Callable[[ConnectionInfo], Session]) -> None:
        self.delegate: Session | None = None
        self._close_reason: str | None = None
        super().__init__(info)
        self.host = host
        self._raw_websocket = raw_websocket
        self._head = bytearray()

    # -- delegation -------------------------------------------------------------------------------
    @property
    def state(self) -> SessionState:
        return self.delegate.state if self.delegate is not None else self._state

    @property
    def established(self) -> bool:
        return self.delegate.established if self.delegate is not None else False

    @property
    def has_output(self) -> bool:
        return self.delegate.has_output if self.delegate is not None else bool(self._out)

    def data_to_send(self, max_bytes: int | None = None) -> bytes:
        own = super().data_to_send(max_bytes)
        if self.delegate is None or (own and max_bytes is not None):
            return own
        return own + self.delegate.data_to_send(max_bytes)

    def output_drained(self) -> None:
        if self.delegate is not None:
            self.delegate.output_drained()

    def receive_data(self, data: bytes) -> None:
        if self.delegate is not None:
            self.delegate.receive_data(data)
            return
        super().receive_data(data)

    def describe(self) -> dict[str, Any]:
        return self.delegate.describe() if self.delegate is not None else {}

    # Identity and the close reason are the delegate's once there is one.
    @property
    def client_id(self) -> str | None:
        return self.delegate.client_id if self.delegate is not None else None

    @client_id.setter
    def client_id(self, value: str | None) -> None:
        if self.delegate is not None:
            self.delegate.client_id = value

    @property
    def user(self) -> str | None:
        return self.delegate.user if self.delegate is not None else None

    @user.setter
    def user(self, value: str | None) -> None:
        if self.delegate is not None:
            self.delegate.user = value

    @property
    def close_reason(self) -> str | None:
        return self.delegate.close_reason if self.delegate is not None else self._close_reason

    @close_reason.setter
    def close_reason(self, value: str | None) -> None:
        self._close_reason = value

    # -- routing ----------------------------------------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 65536:
                self.request_close("request head too long")
            return
        target, headers = _parse_head(bytes(self._head))
        path = (target or "").partition("?")[0]
        upgrade = headers.get("upgrade", "").lower() == "websocket"
        match = _SESSION_PATH.match(path)
        if upgrade and match is not None and match.group(3) == "websocket":
            sid = match.group(2)
            host = self.host
            delegate: Session = WebSocketSession(
                self.info, lambda inner: SockJSWebSocketInner(inner, host, sid), path=path,
                frame_type="text", close_reason_on_inner_close="STOMP died")
        elif path == PREFIX or path.startswith(PREFIX + "/") and not upgrade:
            delegate = SockJSHttpSession(self.info, self.host)
        else:
            delegate = self._raw_websocket(self.info)
        self.delegate = delegate
        delegate.wakeup = lambda: self.wakeup()
        delegate.abort_transport = lambda: self.abort_transport()
        delegate.output_limit = self.output_limit
        own = self.output_backlog
        # What waits below counts here too.
        self.output_backlog = lambda: own() + delegate.output_backlog()  # type: ignore[method-assign]
        head, self._head = bytes(self._head), bytearray()
        delegate.receive_data(head)
        self.wakeup()

    def _on_connection_lost(self) -> None:
        if self.delegate is not None:
            self.delegate.connection_lost()  # which unhooks it: its hooks point back here


__all__ = ["SockJSHttpSession", "SockJSRegistry", "SockJSSession", "SockJSWebSocketInner", "WebStompFront"]
