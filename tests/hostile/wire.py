"""Raw-socket MQTT for the hostile tests and harness: exact bytes out, decoded packets in, and a bystander."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

from fakebroker.protocols.mqtt.codec import (
    Connack,
    Connect,
    MqttDecoder,
    Packet,
    Puback,
    Publish,
    Suback,
    Subscribe,
    encode,
)

TIMEOUT = 5.0  # seconds to wait for something that should happen at once; only reached when a test fails


class Closed(AssertionError):
    """The broker closed the connection while a packet was expected."""


class RawMqtt:
    """A plain socket speaking MQTT with the codec."""

    def __init__(self, address: tuple[str, int], timeout: float = TIMEOUT, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect(), so that the TCP window is small from the start (a slow reader).
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.decoder = MqttDecoder(allow_wildcards_in_publish_topic=True)

    def send(self, data: bytes | Packet) -> None:
        self.sock.sendall(data if isinstance(data, bytes) else encode(data))

    def connect(self, client_id: str | None = None, **fields: Any) -> Connack:
        self.send(Connect(client_id=client_id or f"raw-{uuid.uuid4().hex[:8]}", **fields))
        packet = self.recv()
        assert isinstance(packet, Connack) and packet.return_code == 0, packet
        return packet

    def subscribe(self, topic_filter: str, qos: int = 0, packet_id: int = 1) -> Suback:
        self.send(Subscribe(packet_id, [(topic_filter, qos)]))
        packet = self.recv()
        assert isinstance(packet, Suback), packet
        return packet

    def recv(self, timeout: float = TIMEOUT) -> Packet:
        """The next packet; fails on timeout or when the broker closes the connection."""
        deadline = time.monotonic() + timeout
        while (packet := self.decoder.next_packet()) is None:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                raise AssertionError(f"no packet from the broker within {timeout} s") from None
            except ConnectionResetError:
                data = b""
            if not data:
                raise Closed("the broker closed the connection")
            self.decoder.feed(data)
        return packet

    def closed(self, timeout: float = TIMEOUT) -> bool:
        """Wait until the broker closes the connection (whatever it sends before); False if it stays open."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                if not self.sock.recv(1 << 20):
                    return True
            except TimeoutError:
                return False
            except OSError:
                return True

    def close(self) -> None:
        self.sock.close()


class Bystander:
    """A well-behaved client pair: ``check()`` publishes at QoS 1 and waits for the copy to come round."""

    def __init__(self, address: tuple[str, int]) -> None:
        tag = uuid.uuid4().hex[:8]
        self.topic = f"bystander/{tag}"
        self.sub = RawMqtt(address)
        self.sub.connect(f"bystander-sub-{tag}", keepalive=0)  # clock advances must not expire it
        self.sub.subscribe(self.topic, 1)
        self.pub = RawMqtt(address)
        self.pub.connect(f"bystander-pub-{tag}", keepalive=0)
        self._next = 0

    def check(self, timeout: float = TIMEOUT) -> float:
        """Round trip in seconds; fails if the broker does not answer within ``timeout``."""
        self._next = self._next % 0xFFFE + 1
        payload = f"ping {self._next}".encode()
        start = time.monotonic()
        self.pub.send(Publish(self.topic, payload, 1, packet_id=self._next))
        assert self.pub.recv(timeout) == Puback(self._next)
        while True:
            packet = self.sub.recv(timeout)
            if isinstance(packet, Publish) and packet.payload == payload:
                if packet.packet_id is not None:
                    self.sub.send(Puback(packet.packet_id))
                return time.monotonic() - start

    def close(self) -> None:
        self.sub.close()
        self.pub.close()
