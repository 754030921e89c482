"""MQTT clients for the plugin tests, and the ``app`` fixture that runs small application suites with pytester.

This file is also copied, as is, into every pytester directory made by ``app``, so the application suites use
the same clients: ``mqtt_client`` (paho-mqtt with its network thread) and ``async_mqtt`` (a minimal client on
anyio streams, for asyncio and trio tests). Waits are "until it happened, or fail after TIMEOUT"; the only
bounded waits for something *not* to happen are ``MqttClient.nothing_within``.
"""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import paho.mqtt.client as mqtt
import pytest

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

TIMEOUT = 3.0  # only reached when a test fails


class MqttClient:
    """A paho-mqtt 2.x client running its network loop in a thread; what it receives lands in queues."""

    def __init__(self, address: tuple[str, int], client_id: str, *, clean_session: bool = True,
                 keepalive: int = 60, will: tuple[str, bytes, int, bool] | None = None) -> None:
        self.address = tuple(address)
        self.client_id = client_id
        self.keepalive = keepalive
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        if will is not None:
            self.paho.will_set(*will)
        # paho's loop thread reconnects by itself when the broker drops it. A short delay keeps tests fast (and
        # close() quick: loop_stop() waits for the loop thread's current reconnect sleep).
        self.paho.reconnect_delay_set(min_delay=0.02, max_delay=0.1)  # type: ignore[arg-type]
        self.messages: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
        self.connacks: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        self._acks: queue.Queue[int] = queue.Queue()
        self.paho.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.qos))
        self.paho.on_connect = lambda c, u, flags, rc, p: self.connacks.put((bool(flags.session_present), rc))
        self.paho.on_disconnect = lambda c, u, flags, rc, p: self.disconnects.put(rc)
        self.paho.on_subscribe = lambda c, u, mid, codes, p: self._acks.put(mid)
        self._started = False

    def connect(self) -> bool:
        """Connect, start the network thread, wait for the CONNACK; returns session_present."""
        self.paho.connect(*self.address, keepalive=self.keepalive)
        self.paho.loop_start()
        self._started = True
        return self.connack()

    def connack(self) -> bool:
        """The next successful CONNACK (after a reconnect too); returns session_present."""
        session_present, rc = _get(self.connacks, f"{self.client_id}: no CONNACK")
        assert not rc.is_failure, f"{self.client_id}: CONNACK {rc}"
        return session_present

    def subscribe(self, topic: str, qos: int = 1) -> None:
        _, mid = self.paho.subscribe(topic, qos)
        while _get(self._acks, f"{self.client_id}: no SUBACK") != mid:
            pass

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish and wait until paho is done with it (written for QoS 0, PUBACKed for QoS 1)."""
        info = self.paho.publish(topic, payload, qos, retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"{self.client_id}: publish to {topic!r} not completed"

    def expect(self) -> tuple[str, bytes, int]:
        """The next message received: (topic, payload, qos)."""
        return _get(self.messages, f"{self.client_id}: no message")

    def nothing_within(self, seconds: float) -> bool:
        try:
            self.messages.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def disconnected(self) -> Any:
        """Wait until paho saw the connection drop; returns paho's reason code."""
        return _get(self.disconnects, f"{self.client_id}: still connected")

    def close(self) -> None:
        # disconnect() first: it wakes paho's loop thread, which loop_stop() would otherwise wait up to 1 s for.
        self.paho.disconnect()
        if self._started:
            self._started = False
            self.paho.loop_stop()


def _get(q: queue.Queue[Any], failure: str) -> Any:
    try:
        return q.get(timeout=TIMEOUT)
    except queue.Empty:
        raise AssertionError(f"{failure} within {TIMEOUT} s") from None


@pytest.fixture
def mqtt_client() -> Iterator[Callable[..., MqttClient]]:
    """``mqtt_client(broker, client_id, connect=True, **MqttClient options)`` -> a (connected) paho client."""
    made: list[MqttClient] = []

    def make(broker: Any, client_id: str, *, connect: bool = True, **options: Any) -> MqttClient:
        client = MqttClient(tuple(broker.mqtt), client_id, **options)
        made.append(client)
        if connect:
            client.connect()
        return client

    yield make
    for client in made:
        client.close()


class AsyncMqtt:
    """A minimal MQTT 3.1.1 client on an anyio stream (asyncio or trio), made of fakebroker's codec."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.decoder = MqttDecoder()
        self._pid = 0

    @classmethod
    async def open(cls, address: tuple[str, int], client_id: str, **fields: Any) -> AsyncMqtt:
        client = cls(await anyio.connect_tcp(*address))
        await client.send(Connect(client_id=client_id, **fields))
        connack = await client.recv()
        assert isinstance(connack, Connack) and connack.return_code == 0, connack
        return client

    async def send(self, packet: Packet) -> None:
        await self.stream.send(encode(packet))

    async def recv(self) -> Packet:
        with anyio.fail_after(TIMEOUT):
            while (packet := self.decoder.next_packet()) is None:
                self.decoder.feed(await self.stream.receive())
        return packet

    def _next_pid(self) -> int:
        self._pid += 1
        return self._pid

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        await self.send(Subscribe(self._next_pid(), [(topic, qos)]))
        assert isinstance(await self.recv(), Suback)

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        await self.send(Publish(topic, payload, qos, packet_id=self._next_pid() if qos else None))
        if qos:
            assert isinstance(await self.recv(), Puback)

    async def expect(self) -> Publish:
        packet = await self.recv()
        assert isinstance(packet, Publish), packet
        if packet.qos and packet.packet_id is not None:
            await self.send(Puback(packet.packet_id))
        return packet


@pytest.fixture
async def async_mqtt(anyio_backend: Any) -> AsyncIterator[Callable[..., Any]]:
    """``await async_mqtt(broker, client_id, will=Will(...), keepalive=...)`` -> a connected AsyncMqtt."""
    made: list[AsyncMqtt] = []

    async def make(broker: Any, client_id: str, **fields: Any) -> AsyncMqtt:
        client = await AsyncMqtt.open(tuple(broker.mqtt), client_id, **fields)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.stream.aclose()


@pytest.fixture
def app(request: pytest.FixtureRequest) -> pytest.Pytester:
    """A pytester directory for a small application suite, with this file as its conftest."""
    # Import hypothesis here, in the outer run, so that pytester's in-process runs find it loaded: each of them
    # would otherwise import it afresh through its pytest plugin (0.5-1 s) and unload it afterwards.
    import hypothesis  # noqa: F401

    pytester: pytest.Pytester = request.getfixturevalue("pytester")
    pytester.makeconftest(Path(__file__).read_text())
    return pytester

