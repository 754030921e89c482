"""The contract between the server runtime and a protocol session (sans-I/O).

A session is one client connection's state machine. The runtime feeds it the bytes it reads
(:meth:`Session.receive_data`), writes what :meth:`Session.data_to_send` returns, and closes the socket
once :attr:`Session.close_requested` is set and the output is flushed. Work that starts elsewhere (a
message routed by another client, a timer on the clock) appends output and calls :attr:`Session.wakeup`,
which the runtime set to schedule a flush. Nothing in a session does I/O or knows about anyio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConnectionInfo:
    """What the runtime knows about the transport; handed to the session when it is created."""

    peer: tuple[str, int]
    local: tuple[str, int]
    transport: str = "tcp"  # "tcp" or "websocket"
    # Fields the runtime fills for HTTP-upgraded connections.
    headers: dict[str, str] = field(default_factory=dict)


class Session:
    """Base class for protocol sessions. Subclasses implement ``_on_data`` and ``_on_connection_lost``."""

    protocol: str = "?"

    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info
        self._out = bytearray()
        self.close_requested = False
        self.closed = False
        self.wakeup: Callable[[], None] = lambda: None
        # Replaced by the runtime: drop this connection without a protocol goodbye (takeover, faults).
        self.abort_transport: Callable[[], None] = self._abort_without_transport
        self.client_id: str | None = None
        self.user: str | None = None

    # -- runtime-facing API ---------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket. ``b""`` means the peer closed its side."""
        if self.closed or self.close_requested:
            return
        if not data:
            self.connection_lost()
            return
        self._on_data(data)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def connection_lost(self) -> None:
        """The transport is gone (peer closed, reset, dropped by a fault, broker shutdown)."""
        if self.closed:
            return
        self.closed = True
        self._on_connection_lost()

    def describe(self) -> dict[str, Any]:
        """Protocol-specific fields for ``broker.clients``."""
        return {}

    def _abort_without_transport(self) -> None:
        self.connection_lost()
        self.request_close()

    # -- for subclasses --------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.closed:
            return
        self._out += data
        self.wakeup()

    def request_close(self) -> None:
        """Close the connection after the pending output has been written."""
        self.close_requested = True
        self.wakeup()

    def _on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _on_connection_lost(self) -> None:
        raise NotImplementedError
