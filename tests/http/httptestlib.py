"""Helpers for the HTTP tests: a session host with a real model and no node, a driver that feeds a session
bytes, and a parser for the responses it writes."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from fakebroker.protocols.base import ConnectionInfo, Session
from fakebroker.testing import FakeHost

INFO = ConnectionInfo(peer=("127.0.0.1", 50000), local=("127.0.0.1", 8900), transport="http")


class Host(FakeHost):
    """A session host with a real model on a virtual clock, and no node."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    interim: list[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode()


def parse_replies(data: bytes) -> list[Reply]:
    """Every complete response in ``data`` (Content-Length framed, or none for 1xx/204/304)."""
    out: list[Reply] = []
    interim: list[int] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head: {data!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if 100 <= status < 200:
            interim.append(status)
            data = rest
            continue
        n = int(headers.get("content-length", "0"))
        out.append(Reply(status, headers, rest[:n], interim))
        interim = []
        data = rest[n:]
    return out


class Driver:
    """Plays the runtime for one session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.wakeups = 0
        session.wakeup = self._wake

    def _wake(self) -> None:
        self.wakeups += 1

    def feed(self, data: bytes) -> bytes:
        self.session.receive_data(data)
        return self.session.data_to_send()

    def replies(self, data: bytes) -> list[Reply]:
        return parse_replies(self.feed(data))


def request(method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None,
            auth: tuple[str, str] | None = ("guest", "guest")) -> bytes:
    """The bytes of one HTTP/1.1 request with Content-Length framing."""
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost"]
    all_headers = dict(headers or {})
    if auth is not None:
        all_headers.setdefault("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    if body or method in ("POST", "PUT"):
        all_headers.setdefault("Content-Length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
