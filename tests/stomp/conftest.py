"""Fixtures for the STOMP tests. A socket-free harness for STOMP sessions: a minimal SessionHost around a
real model and virtual clock, and a client side that writes frames into a session and decodes what it answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fakebroker.protocols.base import ConnectionInfo
from fakebroker.protocols.stomp.codec import Frame, StompDecoder, encode
from fakebroker.protocols.stomp.session import StompSession
from fakebroker.testing import FakeHost


class Client:
    """One STOMP connection to a session: frames in, frames out, as a raw client would see them."""

    def __init__(self, host: FakeHost, transport: str = "tcp") -> None:
        self.host = host
        self.session = StompSession(ConnectionInfo(("127.0.0.1", 50000), ("127.0.0.1", 61613), transport), host)
        self.decoder = StompDecoder(content_length_commands=None)
        self.raw = bytearray()
        self.aborted = False

        def abort() -> None:
            self.aborted = True
            self.session.connection_lost()

        self.session.abort_transport = abort

    def send_raw(self, data: bytes) -> None:
        self.session.receive_data(data)

    def send(self, command: str, headers: dict[str, str] | list[tuple[str, str]] | None = None,
             body: bytes = b"") -> None:
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        self.send_raw(encode(command, items, body, trailing_lf=False))

    def read_bytes(self) -> bytes:
        data = self.session.data_to_send()
        self.raw += data
        return data

    def frames(self) -> list[Frame]:
        self.decoder.feed(self.read_bytes())
        return list(self.decoder)

    def frame(self) -> Frame:
        frames = self.frames()
        assert len(frames) == 1, frames
        return frames[0]

    def connect(self, version: str = "1.2", **headers: str) -> Frame:
        fields = {"accept-version": version, "host": "/", **{k.replace("_", "-"): v for k, v in headers.items()}}
        self.send("CONNECT", fields)
        frame = self.frame()
        assert frame.command == "CONNECTED", frame
        return frame

    @property
    def closed(self) -> bool:
        return self.session.close_requested or self.session.closed

    def close(self) -> None:
        self.session.connection_lost()


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture
def new_client(host: FakeHost) -> Iterator[Callable[..., Client]]:
    """Make a client of ``host`` (not connected yet); ``transport="websocket"`` for Web STOMP semantics."""
    clients: list[Client] = []

    def make(transport: str = "tcp") -> Client:
        client = Client(host, transport)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(new_client: Callable[..., Client]) -> Client:
    """A client logged in with STOMP 1.2."""
    c = new_client()
    c.connect()
    return c


@pytest.fixture
def client_of() -> Iterator[Callable[..., Client]]:
    """A client of a host of its own, made with the given broker options."""
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        client = Client(FakeHost(**options))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
