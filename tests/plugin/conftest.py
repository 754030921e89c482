"""MQTT clients for the plugin tests, and the ``app`` fixture that runs small application suites with pytester.

This file is also copied, as is, into every pytester directory made by ``app``, so the application suites use
the same clients: ``mqtt_client`` (paho-mqtt with its network thread) and ``async_mqtt`` (a minimal client on
anyio streams, for asyncio and trio tests). Waits are "until it happened, or fail after TIMEOUT"; the only
bounded waits for something *not* to happen are ``MqttClient.nothing_within``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
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

