"""Fixtures for the end-to-end MQTT tests: paho-mqtt clients and raw-socket clients against a fresh broker.

Everything is reached through fixtures (``broker``, ``client``, ``raw``, ``protocol``, ``transport``) so the
tests work under ``--import-mode=importlib``. Waiting is always "until something happened, or fail after a
timeout"; nothing sleeps to let the broker catch up.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from kit.wait import TIMEOUT, wait_until

from fakebroker import ThreadedBroker
from fakebroker.clients.mqtt import MqttClient
from fakebroker.protocols.mqtt.codec import Connack, Connect, MqttDecoder, Packet, Publish, encode

PROTOCOLS = {"v31": mqtt.MQTTv31, "v311": mqtt.MQTTv311}
LEVELS = {mqtt.MQTTv31: 3, mqtt.MQTTv311: 4}


class PahoClient(MqttClient):
    """The shipped test client, addressed through the test's broker (``transport`` picks TCP or WebSocket)."""

    def __init__(self, broker: ThreadedBroker, client_id: str, *, protocol: int = mqtt.MQTTv311,
                 transport: str = "tcp", **options: Any) -> None:
        super().__init__(broker.web_mqtt_url if transport == "websockets" else broker.mqtt, client_id,
                         protocol=LEVELS.get(protocol, 5), **options)
        self.broker = broker
        self.transport = transport

    def disconnect(self) -> None:
        """Clean DISCONNECT, and wait until the broker has dropped the connection."""
        super().disconnect()
        wait_until(lambda: self.client_id not in self.broker.clients.ids(), what=f"{self.client_id} to leave")

    def start_loop(self) -> None:
        """paho's own network thread; all socket writes happen there (paho is not safe otherwise)."""
        self.paho.loop_start()
        self._looping = True


class RawClient:
    """A plain socket speaking MQTT with the codec: exact bytes out, exact packets in."""

    def __init__(self, address: tuple[str, int], timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.decoder = MqttDecoder(allow_wildcards_in_publish_topic=True)

    def send(self, data: bytes | Packet) -> None:
        self.sock.sendall(data if isinstance(data, bytes) else encode(data))

    def connect(self, **fields: Any) -> Connack:
        """Send CONNECT (``client_id`` etc. as in :class:`Connect`) and return the CONNACK."""
        if fields.get("protocol_level") == 3:
            fields.setdefault("protocol_name", "MQIsdp")
        self.send(Connect(**fields))
        packet = self.recv()
        assert isinstance(packet, Connack), packet
        return packet

    def recv(self, timeout: float = TIMEOUT) -> Packet:
        """The next packet; fails on timeout or when the broker closes the connection."""
        deadline = time.monotonic() + timeout
        while (packet := self.decoder.next_packet()) is None:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError("no packet from the broker within the timeout") from None
            if not data:
                raise AssertionError("the broker closed the connection")
            self.decoder.feed(data)
        return packet

    def recv_publish(self) -> Publish:
        packet = self.recv()
        assert isinstance(packet, Publish), packet
        return packet

    def closed(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Wait for the broker to close the connection; returns what it sent before. Fails if it stays open."""
        packets: list[Packet] = []
        deadline = time.monotonic() + timeout
        while True:
            while (packet := self.decoder.next_packet()) is not None:
                packets.append(packet)
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"connection still open after {timeout} s; got {packets}") from None
            except ConnectionResetError:
                return packets
            if not data:
                return packets
            self.decoder.feed(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def broker(fakebroker: ThreadedBroker) -> ThreadedBroker:
    """The plugin's fresh broker (configure it with ``@pytest.mark.fakebroker(**options)``)."""
    return fakebroker


@pytest.fixture(params=list(PROTOCOLS))
def protocol(request: pytest.FixtureRequest) -> int:
    """paho's protocol constant, MQTT 3.1 and 3.1.1."""
    return PROTOCOLS[request.param]


@pytest.fixture(params=["tcp", "websockets"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(broker: ThreadedBroker, request: pytest.FixtureRequest) -> Iterator[Callable[..., PahoClient]]:
    """Factory: ``client("id", connect=True, broker=<the test's broker>, **PahoClient options)`` -> a PahoClient.

    Uses the test's ``protocol`` and ``transport`` fixtures when it has them (MQTT 3.1.1 over TCP otherwise).
    """
    made: list[PahoClient] = []
    defaults: dict[str, Any] = {}
    if "protocol" in request.fixturenames:
        defaults["protocol"] = request.getfixturevalue("protocol")
    if "transport" in request.fixturenames:
        defaults["transport"] = request.getfixturevalue("transport")

    def make(client_id: str, *, connect: bool = True, broker: ThreadedBroker = broker, **options: Any) -> PahoClient:
        c = PahoClient(broker, client_id, **{**defaults, **options})
        made.append(c)
        if connect:
            session_present, code = c.connect()
            assert code == 0, f"{client_id}: CONNACK {code}"
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def raw(broker: ThreadedBroker) -> Iterator[Callable[..., RawClient]]:
    """Factory: ``raw()`` -> a RawClient connected (TCP only, no MQTT CONNECT yet) to the broker."""
    made: list[RawClient] = []

    def make(broker: ThreadedBroker = broker) -> RawClient:
        c = RawClient(tuple(broker.mqtt))  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def level(protocol: int) -> int:
    """The CONNECT protocol level of the ``protocol`` fixture (3 or 4)."""
    return LEVELS[protocol]


@pytest.fixture
def gone(broker: ThreadedBroker) -> Callable[[str], None]:
    """``gone(client_id)``: wait until the broker no longer lists the client (its will, if any, is out)."""

    def wait(client_id: str) -> None:
        wait_until(lambda: client_id not in broker.clients.ids(), what=f"{client_id} to be dropped")

    return wait


@pytest.fixture
def until() -> Callable[..., Any]:
    """``until(predicate, timeout=..., what=...)``: poll until truthy, fail after the timeout."""
    return wait_until
