"""What the hostile harness knows about each listener: how a well-behaved client opens a session, what a
plausible session looks like (the seeds that fuzzing mutates), and what is too big.

A protocol's listener is covered once it has a :class:`Target` in :data:`TARGETS` under the listener's name;
the harness fails for a listener without one, so that every protocol that lands gets the same treatment.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from fakebroker import ThreadedBroker
from fakebroker.protocols.mqtt.codec import (
    Connect,
    Disconnect,
    Pingreq,
    Puback,
    Publish,
    Subscribe,
    Unsubscribe,
    Will,
    encode,
)


class Target:
    """One listener, as a hostile client sees it. Subclasses fill in the protocol."""

    listener = "?"

    def address(self, broker: ThreadedBroker) -> tuple[str, int]:
        a = broker.addresses[self.listener]
        return a.host, a.port

    def opening(self, client_id: str) -> bytes:
        """The bytes that complete the protocol's opening (the handshake timeout stops once they are in)."""
        raise NotImplementedError

    def subscriber(self, client_id: str, binding_key: str) -> bytes | None:
        """Open a session and subscribe, at most once (no acknowledgements), to ``amq.topic`` with
        ``binding_key`` (an AMQP binding key: ``.`` separated, ``*`` and ``#``). None: the protocol has no
        subscriptions, or its sessions do not bound what they buffer for a client that stops reading yet (the
        non-reader scenario is then skipped and reported)."""
        raise NotImplementedError

    def seeds(self, rng: random.Random) -> list[bytes]:
        """Plausible whole sessions, as one byte stream each, for mutation."""
        raise NotImplementedError

    def oversized(self) -> list[bytes]:
        """Inputs announcing more than the broker accepts: each must close the connection promptly."""
        raise NotImplementedError

    def wrap(self, stream: bytes) -> bytes:
        """The protocol's bytes as this listener carries them (WebSocket frames them)."""
        return stream


# -- MQTT over TCP -----------------------------------------------------------------------------------------
WORDS = ["a", "b", "dev", "", "+", "#", "sensor", "x" * 40, "é", "$SYS"]


def _topic(rng: random.Random, wildcards: bool) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
    if not wildcards:
        words = [w for w in words if w not in ("+", "#")] or ["t"]
    return "/".join(words)


class MqttTarget(Target):
    listener = "mqtt"

    def opening(self, client_id: str) -> bytes:
        return encode(Connect(client_id=client_id, keepalive=0))

    def subscriber(self, client_id: str, binding_key: str) -> bytes | None:
        topic_filter = binding_key.replace("*", "+").replace(".", "/")
        return self.wrap(self.opening(client_id) + encode(Subscribe(1, [(topic_filter, 0)])))

    def seeds(self, rng: random.Random) -> list[bytes]:
        out = []
        for n in range(8):
            will = Will(_topic(rng, False), rng.randbytes(rng.randint(0, 20)), rng.randint(0, 1), rng.random() < .3)
            packets: list[bytes] = [encode(Connect(
                client_id=f"fuzz-{n}-{rng.randrange(10**6)}", keepalive=rng.choice([0, 1, 60]),
                clean_session=rng.random() < 0.8, will=will if rng.random() < 0.3 else None,
                username="guest" if rng.random() < 0.3 else None, password=b"guest" if rng.random() < 0.3 else None,
                protocol_level=rng.choice([3, 4, 4, 4]), protocol_name="MQTT"))]
            for pid in range(1, rng.randint(2, 8)):
                kind = rng.random()
                if kind < 0.3:
                    packets.append(encode(Subscribe(pid, [(_topic(rng, True), rng.randint(0, 2))])))
                elif kind < 0.7:
                    qos = rng.randint(0, 1)
                    packets.append(encode(Publish(_topic(rng, False), rng.randbytes(rng.randint(0, 64)), qos,
                                                  rng.random() < 0.2, False, pid if qos else None)))
                elif kind < 0.8:
                    packets.append(encode(Unsubscribe(pid, [_topic(rng, True)])))
                elif kind < 0.9:
                    packets.append(encode(Puback(pid)))
                else:
                    packets.append(encode(Pingreq()))
            if rng.random() < 0.5:
                packets.append(encode(Disconnect()))
            out.append(self.wrap(b"".join(packets)))
        return out

    def oversized(self) -> list[bytes]:
        huge = b"\xff\xff\xff\x7f"  # Remaining Length 268,435,455
        return [
            b"\x10" + huge,  # a CONNECT of 256 MiB
            b"\x10" + b"\x81\x80\x04",  # a CONNECT just over 64 KiB
            self.opening("big") + b"\x30" + huge,  # a PUBLISH of 256 MiB after CONNECT
            self.opening("big2") + b"\x30\x81\x80\x80\x08",  # 16 MiB + 1
            b"\x10\xff\xff\xff\xff\x7f",  # a five-byte Remaining Length
        ]


# -- MQTT over WebSocket ------------------------------------------------------------------------------------
def ws_frame(payload: bytes, opcode: int = 2, fin: bool = True, mask: bytes | None = None,
             length: int | None = None) -> bytes:
    """A client frame (masked, as RFC 6455 requires of clients). ``length`` overrides the announced length."""
    mask = os.urandom(4) if mask is None else mask
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def upgrade_request(path: str = "/ws", protocol: str = "mqtt", extra: bytes = b"") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {protocol}\r\n").encode() + extra + b"\r\n"


class WebSocketTarget(Target):
    """A protocol carried over a WebSocket listener: the inner target's bytes in masked binary frames."""

    def __init__(self, listener: str, inner: Target, path: str = "/ws", subprotocol: str = "mqtt") -> None:
        self.listener = listener
        self.inner = inner
        self.path = path
        self.subprotocol = subprotocol

    def address(self, broker: ThreadedBroker) -> tuple[str, int]:
        url = urlparse(getattr(broker, f"{self.listener}_url"))
        assert url.hostname is not None and url.port is not None
        return url.hostname, url.port

    def wrap(self, stream: bytes) -> bytes:
        return upgrade_request(self.path, self.subprotocol) + ws_frame(stream) if stream else b""

    def opening(self, client_id: str) -> bytes:
        return self.wrap(self.inner.opening(client_id))

    def subscriber(self, client_id: str, binding_key: str) -> bytes | None:
        inner = self.inner.subscriber(client_id, binding_key)
        return None if inner is None else self.wrap(inner)

    def seeds(self, rng: random.Random) -> list[bytes]:
        out = []
        for seed in self.inner.seeds(rng):
            # The inner session split over several frames, some fragmented, with pings and a close.
            frames, rest = [], seed
            while rest:
                cut = rng.randint(1, max(1, len(rest)))
                chunk, rest = rest[:cut], rest[cut:]
                if rng.random() < 0.2 and len(chunk) > 1:
                    frames.append(ws_frame(chunk[:1], opcode=2, fin=False) + ws_frame(chunk[1:], opcode=0))
                else:
                    frames.append(ws_frame(chunk, opcode=rng.choice([1, 2, 2])))
                if rng.random() < 0.1:
                    frames.append(ws_frame(b"hi", opcode=9))
            if rng.random() < 0.3:
                frames.append(ws_frame(struct.pack("!H", 1000), opcode=8))
            extra = rng.choice([b"", b"Origin: http://x\r\n", b"X-A: " + rng.randbytes(8).hex().encode() + b"\r\n"])
            out.append(upgrade_request(self.path, rng.choice([self.subprotocol, "mqttv3.1", "other"]), extra)
                       + b"".join(frames))
        return out

    def oversized(self) -> list[bytes]:
        upgrade = upgrade_request(self.path, self.subprotocol)
        inner = self.inner.oversized()
        out = [b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 200_000 + b"\r\n\r\n"]  # a 200 KB header
        out += [upgrade + ws_frame(bad) for bad in inner]
        if inner:
            # A frame announcing 8 EiB: its data streams to the protocol inside, whose own limit closes.
            out.append(upgrade + ws_frame(inner[0], length=(1 << 63) - 1))
        return out


# -- STOMP over TCP ----------------------------------------------------------------------------------------
def stomp_frame(command: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = "".join(f"{k}:{v}\n" for k, v in headers.items())
    return f"{command}\n{head}\n".encode() + body + b"\x00"


class StompTarget(Target):
    listener = "stomp"

    def opening(self, client_id: str) -> bytes:
        return stomp_frame("CONNECT", {"accept-version": "1.0,1.1,1.2", "host": "/", "login": "guest",
                                       "passcode": "guest", "client-id": client_id})

    def subscriber(self, client_id: str, binding_key: str) -> bytes | None:
        return self.wrap(self.opening(client_id) + stomp_frame(
            "SUBSCRIBE", {"id": "0", "destination": f"/topic/{binding_key}", "ack": "auto"}))

    def seeds(self, rng: random.Random) -> list[bytes]:
        out = []
        for n in range(8):
            frames = [self.opening(f"fuzz-{n}")]
            for i in range(rng.randint(1, 6)):
                kind = rng.random()
                dest = rng.choice(["/topic/a.b", "/queue/q", "/exchange/amq.topic/x", "/amq/queue/q",
                                   "/temp-queue/t", "/topic/" + _topic(rng, False).replace("/", ".")])
                if kind < 0.4:
                    body = rng.randbytes(rng.randint(0, 40))
                    headers = {"destination": dest, "receipt": f"r{i}"}
                    if rng.random() < 0.5:
                        headers["content-length"] = str(len(body))
                    frames.append(stomp_frame("SEND", headers, body))
                elif kind < 0.7:
                    frames.append(stomp_frame("SUBSCRIBE", {"id": str(i), "destination": dest,
                                                            "ack": rng.choice(["auto", "client", "client-individual"]),
                                                            "prefetch-count": str(rng.randint(0, 5))}))
                elif kind < 0.8:
                    frames.append(stomp_frame("UNSUBSCRIBE", {"id": str(i)}))
                elif kind < 0.9:
                    ack = {"id": f"T_{i}@@session/1", "message-id": "x"}
                    frames.append(stomp_frame(rng.choice(["ACK", "NACK"]), ack))
                else:
                    frames.append(stomp_frame(rng.choice(["BEGIN", "COMMIT", "ABORT"]), {"transaction": "tx"}))
                if rng.random() < 0.2:
                    frames.append(b"\n")  # a heart-beat
            if rng.random() < 0.5:
                frames.append(stomp_frame("DISCONNECT", {"receipt": "bye"}))
            out.append(self.wrap(b"".join(frames)))
        return out

    def oversized(self) -> list[bytes]:
        # STOMP has no frame-size limit by default (the stomp_max_* options are off, as in RabbitMQ 3.10): a
        # large frame is read in full. The time to CONNECT is bounded (the slow-loris scenario).
        return []


# -- AMQP 0-9-1 --------------------------------------------------------------------------------------------
class AmqpTarget(Target):
    listener = "amqp"

    def _methods(self, *methods: Any, channel: int = 0) -> bytes:
        from fakebroker.protocols.amqp.codec import encode_method

        return b"".join(encode_method(channel, m) for m in methods)

    def opening(self, client_id: str) -> bytes:
        from pamqp import commands as c

        return b"AMQP\x00\x00\x09\x01" + self._methods(
            c.Connection.StartOk(client_properties={"connection_name": client_id}, mechanism="PLAIN",
                                 response="\0guest\0guest", locale="en_US"),
            c.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0),
            c.Connection.Open(virtual_host="/"))

    def subscriber(self, client_id: str, binding_key: str) -> bytes | None:
        from pamqp import commands as c

        q = f"{client_id}-q"
        return self.opening(client_id) + self._methods(
            c.Channel.Open(), c.Queue.Declare(queue=q, auto_delete=True),
            c.Queue.Bind(queue=q, exchange="amq.topic", routing_key=binding_key),
            c.Basic.Consume(queue=q, no_ack=True), channel=1)

    def seeds(self, rng: random.Random) -> list[bytes]:
        from pamqp import commands as c

        out = []
        for n in range(8):
            q = f"fuzz-q{rng.randrange(5)}"
            methods = [c.Channel.Open(),
                       c.Queue.Declare(queue=q, auto_delete=True),
                       c.Queue.Bind(queue=q, exchange="amq.topic", routing_key=_topic(rng, True).replace("/", ".")),
                       c.Basic.Qos(prefetch_count=rng.randint(0, 3)),
                       c.Basic.Consume(queue=q, no_ack=rng.random() < 0.5),
                       c.Basic.Get(queue=q),
                       c.Basic.Ack(delivery_tag=rng.randint(0, 3)),
                       c.Queue.Purge(queue=q),
                       c.Exchange.Declare(exchange=f"fx{rng.randrange(3)}",
                                          exchange_type=rng.choice(["topic", "fanout"])),
                       c.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)]
            rng.shuffle(methods)
            body = self.opening(f"fuzz-{n}") + self._methods(c.Channel.Open(), channel=1)
            body += self._methods(*methods[: rng.randint(1, len(methods))], channel=1)
            if rng.random() < 0.5:
                body += self._methods(c.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
            out.append(body)
        return out

    def oversized(self) -> list[bytes]:
        return [
            b"AMQP\x00\x00\x09\x01" + b"\x01\x00\x00\xff\xff\xff\xff",  # a 4 GiB frame before Start-Ok
            self.opening("big") + b"\x01\x00\x01\x7f\xff\xff\xff",  # 2 GiB, past frame_max
        ]


# -- HTTP: statelessd and the management API ---------------------------------------------------------------
def http_request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    all_headers = {"Host": "localhost", "Content-Length": str(len(body)), **(headers or {})}
    head = "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
    return f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body


AUTH = {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}  # guest:guest


class HttpTarget(Target):
    """statelessd on ``http`` (form posts to an exchange); with ``management``, RabbitMQ's HTTP API."""

    def __init__(self, listener: str = "http") -> None:
        self.listener = listener

    def opening(self, client_id: str) -> bytes:
        return http_request("GET", "/stats" if self.listener == "http" else "/api/overview", AUTH)

    def subscriber(self, client_id: str, binding_key: str) -> bytes | None:
        return None  # no subscriptions over HTTP

    def seeds(self, rng: random.Random) -> list[bytes]:
        out = []
        for _ in range(8):
            requests = []
            for _ in range(rng.randint(1, 4)):
                if self.listener == "http":
                    form = f"body={rng.randbytes(6).hex()}&content_type=text/plain&delivery_mode={rng.randint(1, 2)}"
                    requests.append(http_request("POST", f"/%2F/amq.topic/{_topic(rng, False).replace('/', '.')}",
                                                 {**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
                                                 form.encode()))
                else:
                    path = rng.choice(["/api/overview", "/api/queues", "/api/exchanges/%2F", "/api/bindings",
                                       "/api/connections", "/api/vhosts", "/api/whoami", "/api/channels"])
                    requests.append(http_request("GET", path, AUTH))
                    if rng.random() < 0.5:
                        q = f"fuzz-{rng.randrange(5)}"
                        requests.append(http_request("PUT", f"/api/queues/%2F/{q}",
                                                     {**AUTH, "Content-Type": "application/json"},
                                                     b'{"auto_delete": true, "durable": false}'))
            out.append(b"".join(requests))
        return out

    def oversized(self) -> list[bytes]:
        return [
            b"POST /%2F/amq.topic/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 200_000 + b"\r\n\r\n",
        ]


#: Listener name -> the target that covers it.
TARGETS: dict[str, Callable[[], Target]] = {
    "mqtt": MqttTarget,
    "web_mqtt": lambda: WebSocketTarget("web_mqtt", MqttTarget()),
    "stomp": StompTarget,
    "web_stomp": lambda: WebSocketTarget("web_stomp", StompTarget(), subprotocol="v12.stomp"),
    "amqp": AmqpTarget,
    "http": HttpTarget,
    "management": lambda: HttpTarget("management"),
}
