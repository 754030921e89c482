"""Fixtures for the end-to-end MQTT tests: paho-mqtt clients and raw-socket clients against a fresh broker.

Everything is reached through fixtures (``broker``, ``client``, ``raw``, ``protocol``, ``transport``) so the
tests work under ``--import-mode=importlib``. Waiting is always "until something happened, or fail after a
timeout"; nothing sleeps to let the broker catch up.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import pytest
from kit.wait import TIMEOUT, wait_until

from fakebroker import ThreadedBroker
from fakebroker.protocols.mqtt.codec import Connack, Connect, MqttDecoder, Packet, Publish, encode

PROTOCOLS = {"v31": mqtt.MQTTv31, "v311": mqtt.MQTTv311}
LEVELS = {mqtt.MQTTv31: 3, mqtt.MQTTv311: 4}


class Received:
    """One PUBLISH as paho handed it over."""

    def __init__(self, m: mqtt.MQTTMessage) -> None:
        self.topic: str = m.topic
        self.payload: bytes = m.payload
        self.qos: int = m.qos
        self.retain: bool = bool(m.retain)
        self.dup: bool = bool(m.dup)

    def __repr__(self) -> str:
        return f"<{self.topic} {self.payload!r} qos={self.qos} retain={int(self.retain)} dup={int(self.dup)}>"


class PahoClient:
    """A paho-mqtt 2.x client running its network loop in a thread, collecting messages in a queue."""

    def __init__(self, broker: ThreadedBroker, client_id: str, *, protocol: int = mqtt.MQTTv311,
                 transport: str = "tcp", clean_session: bool = True, keepalive: int = 60,
                 will: tuple[str, bytes, int, bool] | None = None, username: str | None = None,
                 password: str | None = None) -> None:
        self.broker = broker
        self.client_id = client_id
        self.transport = transport
        self.keepalive = keepalive
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                                transport="websockets" if transport == "websockets" else "tcp",
                                clean_session=None if protocol == mqtt.MQTTv5 else clean_session,
                                reconnect_on_failure=False)
        if transport == "websockets":
            self.paho.ws_set_options(path="/ws")
        if will is not None:
            topic, payload, qos, retain = will
            self.paho.will_set(topic, payload, qos, retain)
        if username is not None:
            self.paho.username_pw_set(username, password)
        self.messages: queue.Queue[Received] = queue.Queue()
        self._connack: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._acks: dict[int, list[int]] = {}
        self._acked = threading.Condition()
        self.disconnected = threading.Event()
        self.paho.on_connect = self._on_connect
        self.paho.on_message = lambda c, u, m: self.messages.put(Received(m))
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_unsubscribe = self._on_unsubscribe
        self.paho.on_disconnect = self._on_disconnect
        self._looping = False

    # callbacks (paho's thread)
    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self._connack.put((bool(flags.session_present), rc))

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnected.set()

    def _on_subscribe(self, c: Any, u: Any, mid: int, codes: list[Any], props: Any) -> None:
        with self._acked:
            self._acks[mid] = [code.value for code in codes]
            self._acked.notify_all()

    def _on_unsubscribe(self, c: Any, u: Any, mid: int, codes: Any, props: Any) -> None:
        with self._acked:
            self._acks[mid] = []
            self._acked.notify_all()

    def _wait_ack(self, mid: int) -> list[int]:
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._acks, TIMEOUT):
                raise AssertionError(f"{self.client_id}: no SUBACK/UNSUBACK for mid {mid}")
            return self._acks.pop(mid)

    # API (test thread)
    def connect(self) -> tuple[bool, Any]:
        """Connect and wait for the CONNACK; returns (session_present, paho reason code)."""
        if self.transport == "websockets":
            url = urlparse(self.broker.web_mqtt_url)
            host, port = url.hostname, url.port
        else:
            host, port = self.broker.mqtt
        assert host is not None and port is not None
        self.paho.connect(host, port, self.keepalive)
        self.start_loop()
        try:
            return self._connack.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no CONNACK") from None

    def subscribe(self, topic: str | list[tuple[str, int]], qos: int = 0) -> list[int]:
        """SUBSCRIBE and wait for the SUBACK; returns the granted QoS list."""
        result, mid = self.paho.subscribe(topic, qos) if isinstance(topic, str) else self.paho.subscribe(topic)
        assert result == mqtt.MQTT_ERR_SUCCESS
        return self._wait_ack(mid)

    def unsubscribe(self, topic: str) -> None:
        result, mid = self.paho.unsubscribe(topic)
        assert result == mqtt.MQTT_ERR_SUCCESS
        self._wait_ack(mid)

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False) -> None:
        """Publish and wait until paho is done with it (written for QoS 0, PUBACKed for QoS 1)."""
        info = self.paho.publish(topic, payload, qos, retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"{self.client_id}: publish to {topic!r} not completed"

    def expect(self, count: int = 1) -> list[Received]:
        """The next ``count`` messages; fails if they do not arrive within the timeout."""
        out = []
        for _ in range(count):
            try:
                out.append(self.messages.get(timeout=TIMEOUT))
            except queue.Empty:
                raise AssertionError(f"{self.client_id}: expected {count} messages, got {out}") from None
        return out

    def expect_one(self) -> Received:
        return self.expect(1)[0]

    def pending(self) -> list[Received]:
        """Messages received but not yet taken (does not wait)."""
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def disconnect(self) -> None:
        """Clean DISCONNECT, and wait until the broker has dropped the connection."""
        self.paho.disconnect()
        self.disconnected.wait(TIMEOUT)
        self.stop()
        wait_until(lambda: self.client_id not in self.broker.clients.ids(), what=f"{self.client_id} to leave")

    def start_loop(self) -> None:
        """paho's own network thread; all socket writes happen there (paho is not safe otherwise)."""
        self.paho.loop_start()
        self._looping = True

    def stop(self) -> None:
        self.paho.disconnect()  # first: it wakes the network thread, which loop_stop() joins
        if self._looping:
            self._looping = False
            self.paho.loop_stop()


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
            session_present, rc = c.connect()
            assert not rc.is_failure, f"{client_id}: CONNACK {rc}"
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
