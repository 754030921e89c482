"""STOMP and Web STOMP clients for the contract scenarios: raw frames out, exact frames in.

:class:`StompClient` is a plain socket; :class:`WebStompClient` is websocket-client with fakebroker's frame codec
on top. Both read the server's frames with fakebroker's decoder in client mode (``content-length`` honoured on
every frame), keep the raw bytes they received (:attr:`raw`), and tell "the broker closed the connection"
apart from "nothing arrived".
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from typing import Any

import websocket

from fakebroker.protocols.stomp.codec import Frame, StompDecoder, StompFrameError, encode

TIMEOUT = 5.0

Headers = dict[str, str] | list[tuple[str, str]] | None


def frame_bytes(command: str, headers: Headers = None, body: bytes | str = b"") -> bytes:
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    data = body.encode() if isinstance(body, str) else body
    # What stomp clients send: no content-length unless asked for, no trailing newline.
    out = command + "\n" + "".join(f"{k}:{v}\n" for k, v in items) + "\n"
    return out.encode("utf-8", "surrogateescape") + data + b"\x00"


class BrokerClosed(AssertionError):
    pass


class _Base:
    """What both transports share: the decoder, the inbox, the waits."""

    def __init__(self, vhost: str, quiet: float) -> None:
        self.vhost = vhost
        self.quiet = quiet
        self.decoder = StompDecoder(content_length_commands=None)
        self.inbox: list[Frame] = []
        self.raw = bytearray()
        self.eof = False
        self.received_bytes = 0

    # transport-specific
    def send_raw(self, data: bytes) -> None:
        raise NotImplementedError

    def _receive(self, timeout: float) -> bytes | None:
        """Bytes from the broker; None when nothing came in ``timeout``; b"" when the broker closed."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # frames
    def send(self, command: str, headers: Headers = None, body: bytes | str = b"") -> None:
        self.send_raw(frame_bytes(command, headers, body))

    def _next(self, deadline: float) -> Frame | None:
        while True:
            try:
                frame = next(self.decoder, None)
            except StompFrameError as exc:
                raise AssertionError(f"the broker sent a malformed frame: {exc.reason}") from None
            if frame is not None:
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self._receive(left)
            if data is None:
                return None
            if not data:
                self.eof = True
                raise BrokerClosed(f"the broker closed the connection; unread: {self.inbox}")
            self.raw += data
            self.received_bytes += len(data)
            self.decoder.feed(data)

    def recv(self, timeout: float = TIMEOUT) -> Frame:
        if self.inbox:
            return self.inbox.pop(0)
        frame = self._next(time.monotonic() + timeout)
        if frame is None:
            raise AssertionError(f"no frame from the broker within {timeout} s")
        return frame

    def recv_command(self, command: str, timeout: float = TIMEOUT) -> Frame:
        """The first frame with ``command``; others that come first stay in the inbox."""
        for i, frame in enumerate(self.inbox):
            if frame.command == command:
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            frame = self._next(deadline)
            if frame is None:
                raise AssertionError(f"no {command} within {timeout} s; got {self.inbox}")
            if frame.command == command:
                return frame
            self.inbox.append(frame)

    def frames(self, count: int, timeout: float = TIMEOUT) -> list[Frame]:
        return [self.recv(timeout) for _ in range(count)]

    def receipt(self, receipt_id: str) -> None:
        frame = self.recv_command("RECEIPT")
        assert frame.get("receipt-id") == receipt_id, frame

    def expect_nothing(self, quiet: float | None = None) -> None:
        assert not self.inbox, f"unexpected frames: {self.inbox}"
        frame = self._next(time.monotonic() + (self.quiet if quiet is None else quiet))
        assert frame is None, f"unexpected frame: {frame}"

    def expect_closed(self, timeout: float = TIMEOUT) -> list[Frame]:
        """Wait for the broker to close; the frames it sent first."""
        got = list(self.inbox)
        self.inbox.clear()
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = self._next(deadline)
            except BrokerClosed:
                return got
            if frame is None:
                raise AssertionError(f"connection still open after {timeout} s; got {got}")
            got.append(frame)

    def expect_open(self) -> None:
        """A frame with a receipt gets its RECEIPT: the connection is alive and still reading."""
        token = f"alive-{time.monotonic_ns()}"
        self.send("SEND", {"destination": "/topic/contract.alive", "receipt": token})
        self.receipt(token)

    def connect(self, version: str | None = "1.2", *, login: str | None = "guest", passcode: str | None = "guest",
                host: str | None = None, command: str = "CONNECT", **extra: str) -> Frame:
        """CONNECT into the test's vhost; returns the broker's answer (CONNECTED or ERROR)."""
        headers: list[tuple[str, str]] = []
        if version is not None:
            headers.append(("accept-version", version))
        headers.append(("host", self.vhost if host is None else host))
        if login is not None:
            headers.append(("login", login))
        if passcode is not None:
            headers.append(("passcode", passcode))
        headers += [(k.replace("_", "-"), v) for k, v in extra.items()]
        self.send(command, headers)
        return self.recv()

    def connected(self, version: str | None = "1.2", **extra: str) -> StompClientLike:
        frame = self.connect(version, **extra)
        assert frame.command == "CONNECTED", frame
        return self  # type: ignore[return-value]


class StompClient(_Base):
    """STOMP over a plain TCP socket."""

    def __init__(self, address: tuple[str, int], vhost: str, quiet: float) -> None:
        super().__init__(vhost, quiet)
        self.sock = socket.create_connection(address, timeout=TIMEOUT)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _receive(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            return None
        except (ConnectionResetError, OSError):
            return b""

    def abort(self) -> None:
        """Close with an RST and no DISCONNECT."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class WebStompClient(_Base):
    """STOMP over WebSocket at ``/ws``: one STOMP frame per text message unless told otherwise."""

    def __init__(self, url: str, vhost: str, quiet: float, subprotocols: list[str] | None = None,
                 binary: bool = False) -> None:
        super().__init__(vhost, quiet)
        self.ws = websocket.create_connection(url, timeout=TIMEOUT, subprotocols=subprotocols,
                                              skip_utf8_validation=True)
        self.binary = binary
        self.close_frame: tuple[int, str] | None = None
        self.message_opcodes: list[int] = []

    @property
    def subprotocol(self) -> str | None:
        return self.ws.getsubprotocol()  # type: ignore[no-any-return]

    def send_raw(self, data: bytes) -> None:
        if self.binary:
            self.ws.send_binary(data)
        else:
            self.ws.send(data.decode("utf-8", "surrogateescape"))

    def send_message(self, data: bytes, opcode: int = websocket.ABNF.OPCODE_TEXT, fin: bool = True) -> None:
        """One WebSocket frame with these bytes (several STOMP frames, or part of one)."""
        self.ws.send_frame(websocket.ABNF.create_frame(data, opcode, fin=int(fin)))

    def ping(self) -> None:
        """A WebSocket ping; returns at its pong (so the broker has read it)."""
        self.ws.ping(b"p")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.01, deadline - time.monotonic()))
            opcode, data = self.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_PONG:
                return
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                self.raw += data
                self.decoder.feed(data)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                raise BrokerClosed("the broker closed the connection")
        raise AssertionError("no pong")

    def _receive(self, timeout: float) -> bytes | None:
        if self.close_frame is not None:
            return b""
        self.ws.settimeout(timeout)
        try:
            opcode, data = self.ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketConnectionClosedException, ConnectionResetError, OSError):
            return b""
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 0
            self.close_frame = (code, data[2:].decode("utf-8", "replace"))
            return b""
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            self.message_opcodes.append(opcode)
            return bytes(data) if data else self._receive(timeout)
        return self._receive(timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


StompClientLike = Any


def error_frame(message: str, body: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """An ERROR frame as RabbitMQ sends it, as (command, headers, body)."""
    raw = body.encode()
    headers = [("message", message), ("content-type", "text/plain"), ("version", "1.0,1.1,1.2")]
    if raw:
        headers.append(("content-length", str(len(raw))))
    return ("ERROR", headers, raw)


def as_tuple(frame: Frame) -> tuple[str, list[tuple[str, str]], bytes]:
    return (frame.command, frame.headers, frame.body)


__all__ = ["StompClient", "WebStompClient", "as_tuple", "encode", "error_frame", "frame_bytes"]
