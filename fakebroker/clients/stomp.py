"""A stomp.py client for tests: connected in one call, with an inbox, receipts waited for, clear failures.

    client = StompClient(broker.stomp)                        # or broker.web_stomp_url for Web STOMP
    client.connect()
    client.subscribe("/topic/orders.*", ack="client-individual")
    client.send("/topic/orders.created", "order 1", **{"content-type": "text/plain"})   # returns at the RECEIPT
    msg = client.get()                                        # Message(destination, body, headers)
    client.ack(msg)
    assert client.none_within(0.2)
    client.close()

stomp.py runs its own receiver thread; the methods here are called from the test's thread. Every frame that can
carry a receipt asks for one and waits for it, so when a call returns the broker has handled the frame. Needs
``stomp-py`` 8 or 9 (``pip install 'fakebroker[clients]'``).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import stomp  # type: ignore[import-untyped]

from ._inbox import none_within, take, take_many

# What stomp.py's DISCONNECT raises on a connection the broker already closed: the socket's error, stomp.py's,
# or (over Web STOMP) websocket-client's.
_GONE: tuple[type[BaseException], ...] = (OSError, stomp.exception.StompException)
try:
    import websocket
except ImportError:  # only Web STOMP needs it
    pass
else:
    _GONE += (websocket.WebSocketException,)

#: Seconds to wait for something that should happen at once; only reached when a test fails.
TIMEOUT = 5.0


@dataclass(frozen=True)
class Message:
    """One MESSAGE as the client received it."""

    destination: str
    body: bytes
    headers: dict[str, str] = field(compare=False, default_factory=dict)

    @property
    def ack_id(self) -> str:
        """What ACK/NACK name it by: the ``ack`` header (STOMP 1.2) or the ``message-id``."""
        return self.headers.get("ack") or self.headers["message-id"]


class StompError(AssertionError):
    """The broker answered with an ERROR frame."""

    def __init__(self, headers: dict[str, str], body: str) -> None:
        super().__init__(f"ERROR {headers.get('message')!r}: {body!r}")
        self.headers = headers
        self.body = body


class StompClient(stomp.ConnectionListener):  # type: ignore[misc]
    """A stomp.py 1.0/1.1/1.2 connection driven synchronously from a test.

    ``address`` is ``(host, port)`` or a ``ws://host:port/ws`` URL (Web STOMP). ``vhost`` is sent as the ``host``
    header (RabbitMQ's vhost). ``heartbeats`` is stomp.py's ``(cx, cy)`` in ms.
    """

    def __init__(self, address: Sequence[Any] | str, *, version: str = "1.2", vhost: str = "/",
                 login: str | None = "guest", passcode: str | None = "guest", heartbeats: tuple[int, int] = (0, 0),
                 timeout: float = TIMEOUT) -> None:
        self.version = version
        self.login, self.passcode = login, passcode
        self.timeout = timeout
        if isinstance(address, str):
            url = urlparse(address)
            assert url.hostname is not None and url.port is not None, f"not a ws:// URL: {address!r}"
            self.conn = stomp.WSStompConnection([(url.hostname, url.port)], ws_path=url.path or "/ws", vhost=vhost,
                                                heartbeats=heartbeats)
        elif version == "1.0":
            self.conn = stomp.Connection10([(str(address[0]), int(address[1]))])
        else:
            cls = stomp.Connection12 if version == "1.2" else stomp.Connection11
            self.conn = cls([(str(address[0]), int(address[1]))], vhost=vhost, heartbeats=heartbeats)
        self.conn.set_listener("fakebroker", self)
        #: Messages not yet taken with :meth:`get`/:meth:`expect`, oldest first.
        self.inbox: queue.Queue[Message] = queue.Queue()
        #: Every message received, in order.
        self.received: list[Message] = []
        #: ERROR frames the broker sent, oldest first.
        self.errors: queue.Queue[StompError] = queue.Queue()
        #: Set when the connection went away.
        self.disconnected = threading.Event()
        self.connected_headers: dict[str, str] = {}
        self._receipts: dict[str, threading.Event] = {}
        self._ids = itertools.count(1)
        self._subscriptions: dict[str, str] = {}  # id -> destination
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<StompClient {self.version} {self.connected_headers.get('session', 'not connected')}>"

    # -- stomp.py's thread ------------------------------------------------------------------------------------
    def on_connected(self, frame: Any) -> None:
        self.connected_headers = dict(frame.headers)

    def on_message(self, frame: Any) -> None:
        body = frame.body if isinstance(frame.body, bytes) else str(frame.body).encode()
        message = Message(frame.headers.get("destination", ""), body, dict(frame.headers))
        with self._lock:
            self.received.append(message)
        self.inbox.put(message)

    def on_error(self, frame: Any) -> None:
        self.errors.put(StompError(dict(frame.headers), str(frame.body)))
        for event in list(self._receipts.values()):
            event.set()  # a waiting call fails fast: its frame got an ERROR instead

    def on_receipt(self, frame: Any) -> None:
        event = self._receipts.get(frame.headers.get("receipt-id", ""))
        if event is not None:
            event.set()

    def on_disconnected(self) -> None:
        self.disconnected.set()
        for event in list(self._receipts.values()):
            event.set()

    # -- helpers ----------------------------------------------------------------------------------------------
    def _receipt(self) -> str:
        receipt = f"fb-{next(self._ids)}"
        self._receipts[receipt] = threading.Event()
        return receipt

    def _wait(self, receipt: str, what: str) -> None:
        event = self._receipts[receipt]
        try:
            if not event.wait(self.timeout):
                raise AssertionError(f"no RECEIPT for {what} within {self.timeout} s")
            if not self.errors.empty():
                raise self.errors.get_nowait()
            if self.disconnected.is_set():
                raise AssertionError(f"the connection closed before the RECEIPT for {what}")
        finally:
            del self._receipts[receipt]

    # -- connection -------------------------------------------------------------------------------------------
    def connect(self, **headers: str) -> dict[str, str]:
        """CONNECT and wait for CONNECTED; returns its headers. A refusal raises :class:`StompError`."""
        try:
            self.conn.connect(self.login, self.passcode, wait=True, headers=headers)
        except stomp.exception.ConnectFailedException:
            if not self.errors.empty():
                raise self.errors.get_nowait() from None
            raise AssertionError("CONNECT failed") from None
        if not self.errors.empty():
            raise self.errors.get_nowait()
        return self.connected_headers

    def disconnect(self) -> None:
        """DISCONNECT with a receipt; returns once the broker confirmed it (over Web STOMP: once closed)."""
        if self.conn.is_connected():
            self.conn.disconnect(receipt=f"bye-{next(self._ids)}")
        self.disconnected.wait(self.timeout)

    def close(self) -> None:
        """Close without waiting for anything. Safe to call twice, and once the broker is gone: the fixture's
        clients are closed after the test's broker has stopped, when stomp.py may not have seen the close yet
        (its DISCONNECT then meets a socket that its receiver thread is closing)."""
        if self.conn.is_connected():
            with contextlib.suppress(*_GONE):
                self.conn.disconnect()

    @property
    def is_connected(self) -> bool:
        return bool(self.conn.is_connected())

    # -- frames -----------------------------------------------------------------------------------------------
    def subscribe(self, destination: str, *, id: str | None = None, ack: str = "auto", **headers: str) -> str:
        """SUBSCRIBE and wait for its receipt; returns the subscription id."""
        sub_id = id if id is not None else f"sub-{next(self._ids)}"
        receipt = self._receipt()
        self.conn.subscribe(destination, id=sub_id, ack=ack, headers={**headers, "receipt": receipt})
        self._wait(receipt, f"SUBSCRIBE {destination}")
        self._subscriptions[sub_id] = destination
        return sub_id

    def unsubscribe(self, sub_id: str, **headers: str) -> None:
        receipt = self._receipt()
        self.conn.unsubscribe(id=sub_id, headers={**headers, "receipt": receipt})
        self._wait(receipt, f"UNSUBSCRIBE {sub_id}")
        self._subscriptions.pop(sub_id, None)

    def send(self, destination: str, body: bytes | str = b"", *, receipt: bool = True, **headers: str) -> None:
        """SEND; with ``receipt`` (the default) returns once the broker handled it."""
        if not receipt:
            self.conn.send(destination, body, headers=headers)
            return
        tag = self._receipt()
        self.conn.send(destination, body, headers={**headers, "receipt": tag})
        self._wait(tag, f"SEND to {destination}")

    def ack(self, message: Message) -> None:
        self._settle("ACK", message)

    def nack(self, message: Message, requeue: bool | None = None) -> None:
        self._settle("NACK", message, {} if requeue is None else {"requeue": "true" if requeue else "false"})

    def _settle(self, command: str, message: Message, extra: dict[str, str] | None = None) -> None:
        receipt = self._receipt()
        headers: dict[str, str] = {**(extra or {}), "receipt": receipt}
        if self.version == "1.2":
            headers["id"] = message.ack_id
        else:
            headers["message-id"] = message.headers["message-id"]
            if self.version == "1.1":
                headers["subscription"] = message.headers.get("subscription", "")
        self.conn.send_frame(command, headers)
        self._wait(receipt, f"{command} {message.ack_id}")

    # -- receiving --------------------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Message:
        """The next message from the inbox; fails if none arrives within ``timeout``."""
        wait = self.timeout if timeout is None else timeout
        return take(self.inbox, wait, f"no MESSAGE within {wait} s")

    def expect(self, count: int = 1) -> list[Message]:
        """The next ``count`` messages; fails if they do not all arrive in time."""
        return take_many(self.inbox, count, self.timeout, "")

    def none_within(self, seconds: float) -> bool:
        """True when no message arrives within ``seconds`` (real time); one that does stays in the inbox."""
        return none_within(self.inbox, seconds)

    def error(self, timeout: float | None = None) -> StompError:
        """The next ERROR frame the broker sent."""
        wait = self.timeout if timeout is None else timeout
        return take(self.errors, wait, f"no ERROR within {wait} s")


__all__ = ["Message", "StompClient", "StompError"]
