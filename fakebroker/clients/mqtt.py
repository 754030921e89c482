"""A paho-mqtt client for tests: connected in one call, with an inbox, and waits that fail with a clear message.

    client = MqttClient(broker.mqtt, "device-1")         # or broker.web_mqtt_url for MQTT over WebSocket
    client.connect()
    client.subscribe("commands/#", qos=1)
    client.publish("status/device-1", b"online", qos=1)  # returns once PUBACKed
    msg = client.get()                                   # Received(topic, payload, qos, retain, dup)
    assert client.none_within(0.2)
    client.close()

paho runs its own network thread (every socket write happens there); the methods here are called from the
test's thread. Needs ``paho-mqtt`` 2.x (``pip install 'fakebroker[clients]'``).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ._inbox import none_within, take, take_many

#: Seconds to wait for something that should happen at once; only reached when a test fails.
TIMEOUT = 5.0


@dataclass(frozen=True)
class Received:
    """One PUBLISH as the client received it. ``dup`` is not compared (a redelivery equals the original)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    dup: bool = field(default=False, compare=False)

    def astuple(self) -> tuple[str, bytes, int]:
        """``(topic, payload, qos)``, handy in assertions.

        Examples:
            >>> from fakebroker.clients.mqtt import Received
            >>> Received("commands/reboot", b"now", 1).astuple()
            ('commands/reboot', b'now', 1)
        """
        return (self.topic, self.payload, self.qos)

    @property
    def key(self) -> tuple[str, bytes, int, bool]:
        """``(topic, payload, qos, retain)``: what makes two messages equal."""
        return (self.topic, self.payload, self.qos, self.retain)


class MqttClient:
    """A paho-mqtt 2.x client driven synchronously from a test.

    ``address`` is ``(host, port)`` or a ``ws://host:port/path`` URL (MQTT over WebSocket). ``protocol`` is 3
    (MQTT 3.1) or 4 (3.1.1); 5 only to see the broker refuse MQTT 5. ``will`` is ``(topic, payload, qos,
    retain)``. With ``reconnect`` paho reconnects by itself after the broker drops it (quickly, for tests);
    without, a drop is final. ``sink`` is the list that collects every received message (share one between
    connections of one client id). ``timeout`` bounds every wait (only reached when a test fails).

    Examples:
        >>> device = MqttClient(broker.mqtt, "device-1", will=("status/device-1", b"offline", 1, True))
        >>> device.connect()
        (False, 0)
        >>> device.subscribe("commands/#", qos=1)
        [1]
        >>> _ = broker.publish("amq.topic", "commands.reboot", b"now")
        >>> device.get()
        Received(topic='commands/reboot', payload=b'now', qos=1, retain=False, dup=False)
    """

    def __init__(self, address: Sequence[Any] | str, client_id: str = "", *, protocol: int = 4,
                 clean_session: bool = True, keepalive: int = 60,
                 will: tuple[str, bytes | str, int, bool] | None = None,
                 username: str | None = None, password: str | None = None, reconnect: bool = False,
                 sink: list[Received] | None = None, timeout: float = TIMEOUT) -> None:
        self.client_id = client_id
        """The client id its CONNECT sends."""
        self.keepalive = keepalive
        """The keepalive its CONNECT sends, in seconds."""
        self.timeout = timeout
        """How long each wait lasts at most, in real seconds."""
        if isinstance(address, str):
            url = urlparse(address)
            assert url.hostname is not None and url.port is not None, f"not a ws:// URL: {address!r}"
            self.address: tuple[str, int] = (url.hostname, url.port)
            """The broker's ``(host, port)``."""
            self.websocket_path: str | None = url.path or "/"
            """The WebSocket path, or None over TCP."""
        else:
            self.address = (str(address[0]), int(address[1]))
            self.websocket_path = None
        level = {3: paho.MQTTv31, 4: paho.MQTTv311, 5: paho.MQTTv5}.get(protocol, MQTTProtocolVersion(protocol))
        self.paho = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=level,
                                # MQTT 5 has clean start instead (only to see a broker refuse it here).
                                clean_session=None if level == paho.MQTTv5 else clean_session,
                                transport="websockets" if self.websocket_path else "tcp",
                                reconnect_on_failure=reconnect)
        """The paho-mqtt ``Client`` underneath, for what this class does not wrap."""
        if self.websocket_path:
            self.paho.ws_set_options(path=self.websocket_path)
        if reconnect:
            self.paho.reconnect_delay_set(min_delay=0.02, max_delay=0.1)  # type: ignore[arg-type]
        if will is not None:
            self.paho.will_set(*will)
        if username is not None:
            self.paho.username_pw_set(username, password)
        self.inbox: queue.Queue[Received] = queue.Queue()
        """Messages not yet taken with :meth:`get`/:meth:`expect`, oldest first."""
        self.received: list[Received] = [] if sink is None else sink
        """Every message received, in order (what :meth:`messages` returns)."""
        self.disconnected = threading.Event()
        """Set when paho saw the connection go (cleared again by a reconnect)."""
        self._lock = threading.Lock()
        self._connacks: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._disconnects: queue.Queue[Any] = queue.Queue()
        self._acks: dict[int, list[int]] = {}
        self._acked = threading.Condition()
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = lambda c, u, mid, codes, props: self._ack(mid, [code.value for code in codes])
        self.paho.on_unsubscribe = lambda c, u, mid, codes, props: self._ack(mid, [])
        self.paho.on_disconnect = self._on_disconnect
        self._looping = False

    def __repr__(self) -> str:
        return f"<MqttClient {self.client_id!r} {self.address[0]}:{self.address[1]}>"

    # -- paho's thread ----------------------------------------------------------------------------------------
    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnected.clear()
        self._connacks.put((bool(flags.session_present), rc))

    def _on_message(self, c: Any, u: Any, m: paho.MQTTMessage) -> None:
        received = Received(m.topic, bytes(m.payload), m.qos, bool(m.retain), bool(m.dup))
        with self._lock:
            self.received.append(received)
        self.inbox.put(received)

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self._disconnects.put(rc)
        self.disconnected.set()

    def _ack(self, mid: int, codes: list[int]) -> None:
        with self._acked:
            self._acks[mid] = codes
            self._acked.notify_all()

    def _wait_ack(self, mid: int | None) -> list[int]:
        with self._acked:
            if mid is None or not self._acked.wait_for(lambda: mid in self._acks, self.timeout):
                raise AssertionError(f"{self.client_id}: no SUBACK/UNSUBACK for mid {mid} within {self.timeout} s")
            return self._acks.pop(mid)

    # -- connection -------------------------------------------------------------------------------------------
    def connect(self) -> tuple[bool, int]:
        """Connect, start paho's network thread and wait for the CONNACK: ``(session_present, return code)``.

        A refused CONNACK is returned, not raised (its code is non-zero).

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1", clean_session=False)
            >>> device.connect()
            (False, 0)
            >>> device.subscribe("commands/#", qos=1)
            [1]
            >>> device.disconnect()
            >>> device.connect()  # the persistent session is still there
            (True, 0)
        """
        self.paho.connect(*self.address, keepalive=self.keepalive)
        self.paho.loop_start()
        self._looping = True
        return self.connack()

    def connack(self) -> tuple[bool, int]:
        """The next CONNACK (after a reconnect too): ``(session_present, return code)``.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1", reconnect=True)
            >>> device.connect()
            (False, 0)
            >>> broker.disconnect("device-1")
            >>> device.connack()  # paho reconnected by itself
            (False, 0)
        """
        present, rc = take(self._connacks, self.timeout, f"{self.client_id}: no CONNACK within {self.timeout} s")
        code = int(getattr(rc, "value", rc))
        # paho 2 reports a 3.1.1 CONNACK return code as its MQTT 5 reason code; give the code on the wire.
        return present, _V3_CODES.get(code, code)

    def wait_disconnected(self, timeout: float | None = None) -> Any:
        """Wait until paho saw the connection drop; returns paho's reason code.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> broker.disconnect("device-1")
            >>> _ = device.wait_disconnected()
            >>> device.disconnected.is_set()
            True
        """
        wait = self.timeout if timeout is None else timeout
        return take(self._disconnects, wait, f"{self.client_id}: still connected")

    def disconnect(self) -> None:
        """A clean DISCONNECT (no Last Will); returns once the connection is closed.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.disconnect()
            >>> broker.wait_for_disconnect("device-1")
        """
        self.paho.disconnect()
        if not self.disconnected.wait(self.timeout):
            raise AssertionError(f"{self.client_id}: still connected after DISCONNECT")
        self.stop()

    def stop(self) -> None:
        """Stop paho's network thread without a DISCONNECT (the connection stays as it is).

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.stop()  # a frozen client: connected, silent
            >>> broker.clients.ids()
            ['device-1']
        """
        if self._looping:
            self._looping = False
            self.paho._thread_terminate = True
            # loop_stop() only joins, and paho's thread would sit out the rest of a 1 s select(): wake it the
            # way paho does when a packet is queued.
            wake = getattr(self.paho, "_sockpairW", None)
            if wake is not None:
                with contextlib.suppress(OSError):
                    wake.send(b"\0")
            self.paho.loop_stop()

    def abort(self) -> None:
        """Drop the TCP connection with a reset and no DISCONNECT, as a device losing power does.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1", will=("status/device-1", b"offline", 1, True))
            >>> device.connect()
            (False, 0)
            >>> device.abort()
            >>> broker.wait_for_message(topic="status/device-1").body  # the Last Will
            b'offline'
        """
        self.stop()
        sock = self.paho.socket()
        if sock is not None:
            raw: Any = getattr(sock, "_socket", sock)  # over WebSocket paho wraps the TCP socket
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raw.close()

    def close(self) -> None:
        """Stop the network thread and close the socket without a goodbye. Safe to call twice.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.close()
            >>> device.close()
            >>> broker.wait_for_disconnect("device-1")
        """
        self.stop()
        sock = self.paho.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- traffic ----------------------------------------------------------------------------------------------
    def subscribe(self, topic: str | list[tuple[str, int]], qos: int = 0) -> list[int]:
        """SUBSCRIBE and wait for the SUBACK; returns the granted QoS levels (128 for a refused filter).

        ``topic`` is one filter (at ``qos``) or a list of ``(filter, qos)``.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.subscribe([("commands/#", 1), ("config/+", 0)])
            [1, 0]
        """
        result, mid = self.paho.subscribe(topic, qos) if isinstance(topic, str) else self.paho.subscribe(topic)
        assert result == paho.MQTT_ERR_SUCCESS, f"{self.client_id}: subscribe failed ({result})"
        return self._wait_ack(mid)

    def unsubscribe(self, topic: str) -> None:
        """UNSUBSCRIBE and wait for the UNSUBACK.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.subscribe("commands/#")
            [0]
            >>> device.unsubscribe("commands/#")
            >>> broker.clients.get("device-1").subscriptions
            {}
        """
        result, mid = self.paho.unsubscribe(topic)
        assert result == paho.MQTT_ERR_SUCCESS, f"{self.client_id}: unsubscribe failed ({result})"
        self._wait_ack(mid)

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False) -> None:
        """Publish; returns once written (QoS 0) or acknowledged (QoS 1: the broker has routed it).

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.publish("sensors/temp", b"21.5", qos=1)
            >>> broker.assert_published(topic="sensors/temp").bodies
            [b'21.5']
        """
        info = self.paho.publish(topic, payload, qos, retain)
        info.wait_for_publish(self.timeout)
        assert info.is_published(), f"{self.client_id}: publish to {topic!r} not completed"

    def get(self, timeout: float | None = None) -> Received:
        """The next message from the inbox; fails if none arrives within ``timeout`` (default: the client's).

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.subscribe("commands/#")
            [0]
            >>> _ = broker.publish("amq.topic", "commands.reboot", b"now")
            >>> device.get().payload
            b'now'
        """
        wait = self.timeout if timeout is None else timeout
        return take(self.inbox, wait, f"{self.client_id}: no message within {wait} s")

    def expect(self, count: int = 1) -> list[Received]:
        """The next ``count`` messages from the inbox; fails if they do not all arrive in time.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.subscribe("commands/#")
            [0]
            >>> for command in (b"stop", b"start"):
            ...     _ = broker.publish("amq.topic", "commands.motor", command)
            >>> [m.payload for m in device.expect(2)]
            [b'stop', b'start']
        """
        return take_many(self.inbox, count, self.timeout, f"{self.client_id}: ")

    def expect_one(self) -> Received:
        """``expect(1)[0]``: the next message.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.subscribe("commands/#")
            [0]
            >>> _ = broker.publish("amq.topic", "commands.reboot", b"now")
            >>> device.expect_one().topic
            'commands/reboot'
        """
        return self.expect(1)[0]

    def pending(self) -> list[Received]:
        """Messages in the inbox, taken out (does not wait).

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.subscribe("commands/#")
            [0]
            >>> _ = broker.publish("amq.topic", "commands.reboot", b"now")
            >>> _ = device.wait_messages(1)
            >>> [m.topic for m in device.pending()], device.pending()
            (['commands/reboot'], [])
        """
        out: list[Received] = []
        while True:
            try:
                out.append(self.inbox.get_nowait())
            except queue.Empty:
                return out

    def none_within(self, seconds: float) -> bool:
        """True when no message arrives within ``seconds`` (real time); one that does stays in the inbox.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.subscribe("commands/#")
            [0]
            >>> _ = broker.publish("amq.topic", "telemetry.temp", b"21.5")  # no subscriber
            >>> device.none_within(0.1)
            True
        """
        return none_within(self.inbox, seconds)

    def messages(self) -> list[Received]:
        """Every message received so far, in order (the inbox is left alone).

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.subscribe("commands/#")
            [0]
            >>> _ = broker.publish("amq.topic", "commands.reboot", b"now")
            >>> _ = device.get()
            >>> [m.payload for m in device.messages()]
            [b'now']
        """
        with self._lock:
            return list(self.received)

    def wait_messages(self, count: int) -> list[Received]:
        """Wait until ``count`` messages have been received in all; returns them all.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.subscribe("commands/#")
            [0]
            >>> for command in (b"stop", b"start"):
            ...     _ = broker.publish("amq.topic", "commands.motor", command)
            >>> len(device.wait_messages(2))
            2
        """
        try:
            _wait_until(lambda: len(self.messages()) >= count, self.timeout, f"{self.client_id} to receive {count}")
        except AssertionError as exc:
            raise AssertionError(f"{exc} messages; received {self.messages()}") from None
        return self.messages()


#: paho's MQTT 5 reason codes for the CONNACK return codes of MQTT 3.1/3.1.1.
_V3_CODES = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


__all__ = ["MqttClient", "Received"]
