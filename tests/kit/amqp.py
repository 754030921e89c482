"""AMQP 0-9-1 on the wire for tests: frames to bytes and back (pamqp), and a client that drives a session
without a socket."""

from __future__ import annotations

from typing import Any

from pamqp import commands as c
from pamqp import frame as pframe
from pamqp.base import Frame as Method
from pamqp.body import ContentBody
from pamqp.header import ContentHeader, ProtocolHeader

from fakebroker.protocols.amqp.session import AmqpSession
from fakebroker.testing import INFO, FakeHost, SessionDriver

HEADER = b"AMQP\x00\x00\x09\x01"
CAPS = {"authentication_failure_close": True, "consumer_cancel_notify": True, "connection.blocked": True,
        "basic.nack": True, "publisher_confirms": True}


def method(channel: int, m: Method) -> bytes:
    return pframe.marshal(m, channel)


def content(channel: int, m: Method, body: bytes, **properties: Any) -> bytes:
    return (pframe.marshal(m, channel)
            + pframe.marshal(ContentHeader(0, len(body), c.Basic.Properties(**properties)), channel)
            + (pframe.marshal(ContentBody(body), channel) if body else b""))


def parse(data: bytes) -> list[tuple[int, Any]]:
    """Every frame in ``data``: (channel, pamqp frame); a protocol header comes back as ProtocolHeader."""
    out: list[tuple[int, Any]] = []
    while data:
        used, channel, frame = pframe.unmarshal(data)
        out.append((channel, frame))
        data = data[used:]
    return out


def start_ok(user: str = "guest", password: str = "guest", mechanism: str = "PLAIN",
             capabilities: dict[str, Any] | None = None, response: str | None = None) -> bytes:
    props = {"product": "test", "capabilities": CAPS if capabilities is None else capabilities}
    return method(0, c.Connection.StartOk(client_properties=props, mechanism=mechanism,
                                          response=f"\0{user}\0{password}" if response is None else response))


class Client:
    """A session with a FakeHost, driven frame by frame; ``send`` returns the frames the session answers."""

    def __init__(self, host: FakeHost | None = None, **options: Any) -> None:
        self.host = host or FakeHost(**options)
        self.session = AmqpSession(INFO, self.host)
        self.driver = SessionDriver(self.session)

    def send(self, *chunks: bytes) -> list[tuple[int, Any]]:
        out = b""
        for chunk in chunks:
            out += self.driver.feed(chunk)
        return parse(out)

    def open(self, vhost: str = "/", heartbeat: int = 0, frame_max: int = 131072,
             channel_max: int = 2047, channels: tuple[int, ...] = (1,),
             capabilities: dict[str, Any] | None = None) -> Client:
        self.send(HEADER)
        self.send(start_ok(capabilities=capabilities))
        self.send(method(0, c.Connection.TuneOk(channel_max, frame_max, heartbeat)))
        answer = self.send(method(0, c.Connection.Open(vhost)))
        assert isinstance(answer[0][1], c.Connection.OpenOk), answer
        for number in channels:
            assert isinstance(self.send(method(number, c.Channel.Open()))[0][1], c.Channel.OpenOk)
        return self

    def call(self, channel: int, m: Method) -> Any:
        """Send one method; return the single frame answered (asserting there is exactly one)."""
        frames = self.send(method(channel, m))
        assert len(frames) == 1, frames
        return frames[0][1]


__all__ = ["CAPS", "HEADER", "Client", "ProtocolHeader", "content", "method", "parse", "start_ok"]
