"""The two backends of the contract suite, and the MQTT clients the scenarios drive them with.

A scenario is written once against :class:`Backend` and runs twice: on :class:`FakeBackend` (a fresh
fakebroker per test, configured like the real node: ``subscription_ttl=5000``) and on :class:`RabbitBackend`
(the real RabbitMQ 3.10 that ``scripts/rabbitmq.sh start`` boots, reached through its MQTT port and the
management API in ``rabbitmq.py``).  Both expose only what a client or an operator can observe.

Isolation on the shared real node: every test gets its own vhost (``contract-<time>-<random>``), made with the
management API and deleted afterwards (which also closes the test's connections and drops its queues and
retained messages).  MQTT clients log in as ``<vhost>:guest``, RabbitMQ's ``vhost:user`` form, so each test
sees an empty broker.  The fake backend has the same vhost, so the scenarios are identical.  Client ids
carry a per-test prefix as well, for the few scenarios that log in anonymously (into vhost ``/``).

Waiting: "something arrives" is a blocking read with a timeout that is only reached when a scenario fails;
"nothing arrives" is a quiet period (:attr:`Backend.quiet`), the one thing a black-box broker allows.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

import paho.mqtt.client as mqtt
import rabbitmq
import websocket
from kit import stomp as stompkit
from kit.wait import TIMEOUT, wait_until

import fakebroker
from fakebroker.clients.mqtt import MqttClient, Received
from fakebroker.protocols.mqtt.codec import (
    Connack,
    Connect,
    Disconnect,
    MqttDecoder,
    MqttProtocolError,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    encode,
)

#: The real node's ``mqtt.subscription_ttl`` (scripts/rabbitmq.sh); the fake backend is started with it.
SUBSCRIPTION_TTL_MS = 5000
#: The real node's web_mqtt listener (scripts/rabbitmq.sh).
WEB_MQTT_PORT = 15675
#: The real node's web_stomp listener.
WEB_STOMP_PORT = 15674
#: Vhosts of the real node older than this (seconds) are leftovers of an interrupted run.
STALE_VHOST_AGE = 600

P = TypeVar("P", bound=Packet)
_DEFAULT: Any = object()


# -- what an operator sees ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Got:
    """One message taken with basic.get. ``properties`` holds only the properties that are set."""

    exchange: str
    routing_key: str
    body: bytes
    properties: dict[str, Any]
    redelivered: bool

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.properties.get("headers") or {})


@dataclass(frozen=True)
class QueueState:
    name: str
    durable: bool
    auto_delete: bool
    exclusive: bool
    arguments: dict[str, Any]

    @property
    def flags(self) -> tuple[bool, bool, bool]:
        """(durable, auto_delete, exclusive), as ``rabbitmqctl list_queues`` shows them."""
        return (self.durable, self.auto_delete, self.exclusive)


def _normalise_properties(props: dict[str, Any]) -> dict[str, Any]:
    # The management API leaves unset properties out; so does this (an empty header table counts as unset).
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in props.items() if v is not None and v != {}}


# -- backends -------------------------------------------------------------------------------------------
class Backend(ABC):
    """One broker as the scenarios see it. Make one per test; :meth:`close` cleans up."""

    name: ClassVar[str]
    #: How long "nothing arrives" is watched for.
    quiet: ClassVar[float]

    def __init__(self) -> None:
        # Vhost and client-id prefix unique across workers and runs; the time lets a later run spot leftovers.
        token = uuid.uuid4().hex[:8]
        self.vhost = f"contract-{int(time.time())}-{token}"
        self.prefix = f"ct{token}"
        self._clients: dict[str, Aborter] = {}
        self._owned: list[Any] = []

    @property
    def is_fake(self) -> bool:
        return self.name == "fake"

    # identities
    @property
    def username(self) -> str:
        """The MQTT user name that logs into this test's vhost as guest."""
        return f"{self.vhost}:guest"

    password = b"guest"

    def cid(self, label: str) -> str:
        """A client id unique to this test."""
        return f"{self.prefix}-{label}"

    @staticmethod
    def queue_name(client_id: str, qos: int) -> str:
        return f"mqtt-subscription-{client_id}qos{qos}"

    # MQTT clients
    @property
    @abstractmethod
    def mqtt(self) -> tuple[str, int]: ...

    @property
    @abstractmethod
    def web_mqtt(self) -> tuple[str, int]:
        """Host and port of MQTT over WebSocket (path ``/ws``)."""

    @property
    @abstractmethod
    def management_url(self) -> str:
        """Base URL of RabbitMQ's management HTTP API (``http://host:port``)."""

    def raw(self, *, websocket: bool = False) -> RawClient:
        """A raw MQTT client, connected over TCP, or over WebSocket (``/ws``, subprotocol ``mqtt``) with
        ``websocket``; no CONNECT sent yet."""
        client: RawClient = RawWsClient(self) if websocket else RawClient(self)
        self._owned.append(client)
        return client

    def watcher(self, *topics: tuple[str, int], label: str = "watcher", **connect_fields: Any) -> RawClient:
        """A raw client connected as ``cid(label)`` and subscribed to ``topics``: the scenarios' observer."""
        client = self.raw()
        client.connect(self.cid(label), **connect_fields)
        client.subscribe(*topics)
        return client

    def paho(self, label: str, **options: Any) -> PahoClient:
        """A paho-mqtt 2.x client for ``cid(label)`` logged into this test's vhost (not connected yet)."""
        client = PahoClient(self, self.cid(label), **options)
        self._owned.append(client)
        return client

    def register(self, client_id: str, client: Aborter) -> None:
        self._clients[client_id] = client

    # STOMP clients
    @property
    @abstractmethod
    def stomp(self) -> tuple[str, int]: ...

    @property
    @abstractmethod
    def web_stomp_url(self) -> str: ...

    def stomp_client(self) -> stompkit.StompClient:
        """A raw STOMP client over TCP (no CONNECT sent yet); it logs into this test's vhost."""
        client = stompkit.StompClient(self.stomp, self.vhost, self.quiet)
        self._owned.append(client)
        return client

    def web_stomp_client(self, subprotocols: list[str] | None = None, binary: bool = False,
                         url: str | None = None) -> stompkit.WebStompClient:
        """A STOMP client over WebSocket at ``/ws`` (no CONNECT sent yet)."""
        client = stompkit.WebStompClient(url or self.web_stomp_url, self.vhost, self.quiet, subprotocols, binary)
        self._owned.append(client)
        return client

    # operator side
    @abstractmethod
    def declare_queue(self, name: str, *, durable: bool = False, auto_delete: bool = False,
                      arguments: dict[str, Any] | None = None) -> None: ...

    @abstractmethod
    def bind(self, queue: str, exchange: str, routing_key: str) -> None: ...

    @abstractmethod
    def declare_exchange(self, name: str, type: str = "direct") -> None: ...

    def tap(self, binding_key: str = "#", exchange: str = "amq.topic") -> str:
        """A queue of our own bound to ``exchange`` with ``binding_key``: it sees what gets published there."""
        name = f"contract-tap-{uuid.uuid4().hex[:6]}"
        self.declare_queue(name)
        self.bind(name, exchange, binding_key)
        return name

    @abstractmethod
    def delete_queue(self, name: str) -> None: ...

    @abstractmethod
    def get(self, queue: str) -> Got | None:
        """basic.get with auto-ack: the head message, or None when the queue is empty."""

    def get_wait(self, queue: str) -> Got:
        """The next message of ``queue``, waiting for it to arrive."""
        return wait_until(lambda: self.get(queue), what=f"a message in {queue}")  # type: ignore[no-any-return]

    @abstractmethod
    def publish(self, exchange: str, routing_key: str, body: bytes,
                properties: dict[str, Any] | None = None) -> bool:
        """basic.publish from the AMQP side; True when the message was routed."""

    @abstractmethod
    def queue(self, name: str) -> QueueState | None: ...

    @abstractmethod
    def queues(self) -> dict[str, QueueState]: ...

    @abstractmethod
    def bindings(self, queue: str) -> list[tuple[str, str]]:
        """(exchange, binding key) of every binding to ``queue`` except the default exchange's, sorted."""

    @abstractmethod
    def mqtt_vhost(self, client_id: str) -> str | None:
        """The vhost of the live MQTT connection with this client id, None when there is none."""

    # time and faults
    @abstractmethod
    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the broker's timers (fake: the virtual clock; real: a sleep)."""

    @abstractmethod
    def disconnect(self, client_id: str) -> None:
        """Drop the client's connection with no MQTT DISCONNECT, as when a device leaves the network."""

    def close(self) -> None:
        for client in reversed(self._owned):
            with contextlib.suppress(Exception):
                client.close()


class FakeBackend(Backend):
    """A fresh fakebroker, configured like the real node (``subscription_ttl=5000``).

    ``disconnect`` is fakebroker's own ``broker.disconnect(client_id)``: the broker drops the TCP connection.
    """

    name = "fake"
    quiet = 0.1

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.broker = fakebroker.start(subscription_ttl=SUBSCRIPTION_TTL_MS, vhosts=("/", self.vhost), **options)

    @property
    def mqtt(self) -> tuple[str, int]:
        host, port = self.broker.mqtt
        return (host, port)

    @property
    def web_mqtt(self) -> tuple[str, int]:
        host, port = self.broker.addresses["web_mqtt"]
        return (host, port)

    @property
    def management_url(self) -> str:
        return self.broker.management_url

    def declare_queue(self, name: str, *, durable: bool = False, auto_delete: bool = False,
                      arguments: dict[str, Any] | None = None) -> None:
        self.broker.declare_queue(name, durable=durable, auto_delete=auto_delete, arguments=arguments,
                                  vhost=self.vhost)

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        self.broker.bind(queue, exchange, routing_key, vhost=self.vhost)

    def declare_exchange(self, name: str, type: str = "direct") -> None:
        self.broker.declare_exchange(name, type, vhost=self.vhost)

    @property
    def stomp(self) -> tuple[str, int]:
        host, port = self.broker.stomp
        return (host, port)

    @property
    def web_stomp_url(self) -> str:
        return str(self.broker.web_stomp_url)

    def delete_queue(self, name: str) -> None:
        self.broker.delete_queue(name, vhost=self.vhost)

    def get(self, queue: str) -> Got | None:
        d = self.broker.get(queue, vhost=self.vhost)
        if d is None:
            return None
        return Got(d.exchange, d.routing_key, d.body, _normalise_properties(dict(d.properties)), d.redelivered)

    def publish(self, exchange: str, routing_key: str, body: bytes,
                properties: dict[str, Any] | None = None) -> bool:
        return bool(self.broker.publish(exchange, routing_key, body, properties, vhost=self.vhost).routed)

    def queues(self) -> dict[str, QueueState]:
        infos = self.broker.queues_in(self.vhost)
        return {n: QueueState(n, q.durable, q.auto_delete, q.exclusive, dict(q.arguments)) for n, q in infos.items()}

    def queue(self, name: str) -> QueueState | None:
        return self.queues().get(name)

    def bindings(self, queue: str) -> list[tuple[str, str]]:
        return sorted((b.source, b.routing_key) for b in self.broker.bindings_in(self.vhost)
                      if b.destination == queue and b.source != "")

    def mqtt_vhost(self, client_id: str) -> str | None:
        client = self.broker.clients.get(client_id)
        return None if client is None else client.vhost

    def advance(self, seconds: float) -> None:
        self.broker.clock.advance(seconds)

    def disconnect(self, client_id: str) -> None:
        self.broker.disconnect(client_id)
        client = self._clients.get(client_id)
        if client is not None:
            client.dropped()

    def close(self) -> None:
        super().close()
        self.broker.stop()


class RabbitBackend(Backend):
    """The real node, one vhost per test.

    ``disconnect`` closes the client's socket from the client side with an RST (SO_LINGER 0): RabbitMQ then
    publishes the will, as for a device that left the network. (A force-close through the management API
    is not the same thing: RabbitMQ 3.10 publishes no will then.)
    """

    name = "rabbitmq"
    quiet = 0.3

    def __init__(self) -> None:
        super().__init__()
        rabbitmq.add_vhost(self.vhost)

    @property
    def mqtt(self) -> tuple[str, int]:
        return (rabbitmq.HOST, rabbitmq.MQTT_PORT)

    @property
    def web_mqtt(self) -> tuple[str, int]:
        return (rabbitmq.HOST, WEB_MQTT_PORT)

    @property
    def management_url(self) -> str:
        return f"http://{rabbitmq.HOST}:{rabbitmq.MANAGEMENT_PORT}"

    def declare_queue(self, name: str, *, durable: bool = False, auto_delete: bool = False,
                      arguments: dict[str, Any] | None = None) -> None:
        rabbitmq.declare_queue(name, durable, auto_delete, arguments, vhost=self.vhost)

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        rabbitmq.bind(queue, exchange, routing_key, vhost=self.vhost)

    def declare_exchange(self, name: str, type: str = "direct") -> None:
        rabbitmq.declare_exchange(name, type, vhost=self.vhost)

    @property
    def stomp(self) -> tuple[str, int]:
        return (rabbitmq.HOST, rabbitmq.STOMP_PORT)

    @property
    def web_stomp_url(self) -> str:
        return f"ws://{rabbitmq.HOST}:{WEB_STOMP_PORT}/ws"

    def delete_queue(self, name: str) -> None:
        rabbitmq.delete_queue(name, self.vhost)

    def get(self, queue: str) -> Got | None:
        got = rabbitmq.get(queue, vhost=self.vhost)
        if not got:
            return None
        m = got[0]
        return Got(m["exchange"], m["routing_key"], m["payload"], _normalise_properties(m["properties"]),
                   m["redelivered"])

    def publish(self, exchange: str, routing_key: str, body: bytes,
                properties: dict[str, Any] | None = None) -> bool:
        return rabbitmq.publish(exchange, routing_key, body, properties, vhost=self.vhost)

    def queues(self) -> dict[str, QueueState]:
        return {q["name"]: QueueState(q["name"], q["durable"], q["auto_delete"], q["exclusive"], q["arguments"])
                for q in rabbitmq.list_queues(self.vhost)}

    def queue(self, name: str) -> QueueState | None:
        q = rabbitmq.queue(name, self.vhost)
        return None if q is None else QueueState(q["name"], q["durable"], q["auto_delete"], q["exclusive"],
                                                 q["arguments"])

    def bindings(self, queue: str) -> list[tuple[str, str]]:
        return sorted((b["source"], b["routing_key"]) for b in rabbitmq.list_bindings(queue, self.vhost)
                      if b["source"] != "")

    def mqtt_vhost(self, client_id: str) -> str | None:
        # A new connection reaches the management API's listing only after the stats lag: wait for it.
        try:
            conn = rabbitmq.wait_for(lambda: rabbitmq.mqtt_connection(client_id), timeout=3.0)
        except TimeoutError:
            return None
        return None if conn is None else str(conn["vhost"])

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)

    def disconnect(self, client_id: str) -> None:
        client = self._clients.get(client_id)
        if client is None:
            raise LookupError(f"no client {client_id!r} made by this test")
        client.abort()

    def close(self) -> None:
        super().close()
        rabbitmq.delete_vhost(self.vhost)
        # Anonymous logins land in "/": drop whatever this test's client ids left there.
        rabbitmq.purge_leftovers((f"mqtt-subscription-{self.prefix}",), vhost="/")


def rabbitmq_problem() -> str | None:
    """None when the real node can be used; otherwise why not."""
    if not rabbitmq.enabled():
        return "no RabbitMQ reachable at 127.0.0.1 (set FAKEBROKER_RABBITMQ / run scripts/rabbitmq.sh start)"
    if not rabbitmq.is_reachable():
        return (f"FAKEBROKER_RABBITMQ={os.environ.get('FAKEBROKER_RABBITMQ')} is set but no RabbitMQ is reachable "
                f"at {rabbitmq.HOST} (MQTT {rabbitmq.MQTT_PORT}, management {rabbitmq.MANAGEMENT_PORT}); "
                "run scripts/rabbitmq.sh start")
    return None


def delete_stale_vhosts() -> list[str]:
    """Delete ``contract-<time>-…`` vhosts left by an interrupted run (older than STALE_VHOST_AGE)."""
    deleted = []
    now = time.time()
    for v in rabbitmq.request("GET", "/api/vhosts"):
        parts = v["name"].split("-")
        if len(parts) == 3 and parts[0] == "contract" and parts[1].isdigit() \
                and now - int(parts[1]) > STALE_VHOST_AGE and rabbitmq.delete_vhost(v["name"]):
            deleted.append(v["name"])
    return deleted


# -- MQTT clients -----------------------------------------------------------------------------------------
class Aborter(ABC):
    @abstractmethod
    def abort(self) -> None:
        """Close the TCP connection with an RST and no DISCONNECT."""

    @abstractmethod
    def dropped(self) -> None:
        """The broker dropped the connection (fake backend's ``disconnect``); stop using it."""

    @abstractmethod
    def close(self) -> None: ...


def _rst_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class RawClient(Aborter):
    """A plain socket speaking MQTT through fakebroker's codec: exact packets out, exact packets in.

    Packets that arrive while the scenario waits for another kind are kept in :attr:`inbox`, in order, so a
    delivery racing a PUBACK is not lost.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.sock = self._open()
        self.decoder = MqttDecoder(allow_wildcards_in_publish_topic=True)
        self.inbox: list[Packet] = []
        self.client_id: str | None = None
        self._pid = 0
        self.eof = False

    # the transport (RawWsClient puts WebSocket frames around the same bytes)
    def _open(self) -> socket.socket:
        return socket.create_connection(self.backend.mqtt, timeout=TIMEOUT)

    def _send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_bytes(self, timeout: float) -> bytes | None:
        """What the broker sent next: bytes, ``b""`` once it closed the connection, None after ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return b""

    # bytes out
    def send(self, data: bytes | Packet) -> None:
        self._send_bytes(data if isinstance(data, bytes) else encode(data))

    def next_pid(self) -> int:
        self._pid = self._pid % 0xFFFF + 1
        return self._pid

    # packets in
    def _read(self, deadline: float) -> Packet | None:
        """One more packet from the socket; None at the deadline. AssertionError when the broker closed."""
        while True:
            try:
                packet = self.decoder.next_packet()
            except MqttProtocolError as exc:
                raise AssertionError(f"the broker sent a malformed packet: {exc}") from None
            if packet is not None:
                return packet
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self._recv_bytes(left)
            if data is None:
                return None
            if not data:
                self.eof = True
                raise AssertionError(f"the broker closed the connection; unread: {self.inbox}")
            self.decoder.feed(data)

    def recv(self, timeout: float = TIMEOUT) -> Packet:
        """The next packet, whatever it is."""
        if self.inbox:
            return self.inbox.pop(0)
        packet = self._read(time.monotonic() + timeout)
        if packet is None:
            raise AssertionError(f"no packet from the broker within {timeout} s")
        return packet

    def recv_type(self, kind: type[P], timeout: float = TIMEOUT) -> P:
        """The first packet of ``kind``; others that come first stay in the inbox."""
        for i, packet in enumerate(self.inbox):
            if isinstance(packet, kind):
                del self.inbox[i]
                return packet
        deadline = time.monotonic() + timeout
        while True:
            packet = self._read(deadline)
            if packet is None:
                raise AssertionError(f"no {kind.__name__} within {timeout} s; got {self.inbox}")
            if isinstance(packet, kind):
                return packet
            self.inbox.append(packet)

    def recv_publish(self, timeout: float = TIMEOUT) -> Publish:
        return self.recv_type(Publish, timeout)

    def publishes(self, count: int) -> list[Publish]:
        return [self.recv_publish() for _ in range(count)]

    def expect_nothing(self, quiet: float | None = None) -> None:
        """No packet arrives within the backend's quiet period (and none is waiting)."""
        assert not self.inbox, f"unexpected packets: {self.inbox}"
        packet = self._read(time.monotonic() + (self.backend.quiet if quiet is None else quiet))
        assert packet is None, f"unexpected packet: {packet}"

    def expect_closed(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Wait until the broker closes the connection; returns the packets it sent first."""
        got = list(self.inbox)
        self.inbox.clear()
        deadline = time.monotonic() + timeout
        while True:
            try:
                packet = self._read(deadline)
            except AssertionError:
                if self.eof:
                    return got
                raise
            if packet is None:
                raise AssertionError(f"connection still open after {timeout} s; got {got}")
            got.append(packet)

    def expect_open(self) -> None:
        """The connection is alive and answers: PINGREQ gets a PINGRESP (other packets stay in the inbox)."""
        self.send(Pingreq())
        self.recv_type(Pingresp)

    # MQTT operations
    def connect(self, client_id: str | None = None, *, username: Any = _DEFAULT, password: Any = _DEFAULT,
                **fields: Any) -> Connack:
        """CONNECT (as the test's vhost user unless ``username``/``password`` say otherwise; None = leave
        out) and return the CONNACK. ``client_id`` defaults to ``cid("raw")``."""
        cid = self.backend.cid("raw") if client_id is None else client_id
        if username is _DEFAULT:
            username = self.backend.username
        if password is _DEFAULT:
            password = self.backend.password
        if fields.get("protocol_level") == 3:
            fields.setdefault("protocol_name", "MQIsdp")
        self.client_id = cid
        self.backend.register(cid, self)
        self.send(Connect(client_id=cid, username=username, password=password, **fields))
        packet = self.recv()
        assert isinstance(packet, Connack), packet
        return packet

    def subscribe(self, *topics: tuple[str, int]) -> list[int]:
        """SUBSCRIBE and return the SUBACK's return codes."""
        pid = self.next_pid()
        self.send(Subscribe(pid, list(topics)))
        suback = self.recv_type(Suback)
        assert suback.packet_id == pid, suback
        return suback.return_codes

    def unsubscribe(self, *filters: str) -> None:
        pid = self.next_pid()
        self.send(Unsubscribe(pid, list(filters)))
        assert self.recv_type(Unsuback).packet_id == pid

    def publish(self, topic: str, payload: bytes = b"", qos: int = 0, *, retain: bool = False,
                dup: bool = False) -> Packet | None:
        """PUBLISH; for QoS > 0 wait for the broker's acknowledgement (PUBACK, or whatever it sends: a PUBREC
        would be a difference) and return it."""
        pid = self.next_pid() if qos else None
        self.send(Publish(topic, payload, qos, retain, dup, pid))
        if not qos:
            return None
        deadline = time.monotonic() + TIMEOUT
        while True:
            packet = self._read(deadline)
            if packet is None:
                raise AssertionError(f"no acknowledgement for PUBLISH {topic!r} qos {qos}")
            if not isinstance(packet, Publish):
                return packet
            self.inbox.append(packet)

    def puback(self, packet_id: int | None) -> None:
        """PUBACK a delivery (``packet_id`` of a received QoS 1 PUBLISH)."""
        assert packet_id is not None, "a QoS 0 PUBLISH has no packet id to acknowledge"
        self.send(Puback(packet_id))

    def disconnect(self) -> None:
        """DISCONNECT, then wait until the broker has closed the connection."""
        self.send(Disconnect())
        self.expect_closed()

    # ends
    def abort(self) -> None:
        _rst_close(self.sock)

    def dropped(self) -> None:
        self.expect_closed()

    def close(self) -> None:
        self.sock.close()


class RawWsClient(RawClient):
    """:class:`RawClient` over MQTT-over-WebSocket (``/ws``, subprotocol ``mqtt``): each write is one binary
    frame, and the broker's close frame counts as the end of the connection."""

    def _open(self) -> socket.socket:
        host, port = self.backend.web_mqtt
        self.ws = websocket.create_connection(f"ws://{host}:{port}/ws", subprotocols=["mqtt"], timeout=TIMEOUT)
        return cast(socket.socket, self.ws.sock)

    def _send_bytes(self, data: bytes) -> None:
        self.ws.send_bytes(data)

    def _recv_bytes(self, timeout: float) -> bytes | None:
        self.ws.settimeout(timeout)
        try:
            opcode, data = self.ws.recv_data()  # answers pings, and echoes a close frame
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketConnectionClosedException, OSError):
            return b""
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return b""
        return bytes(data) or self._recv_bytes(timeout)

    def send_close_frame(self) -> None:
        """A WebSocket close frame (status 1000), as a browser's ``WebSocket.close()`` sends."""
        self.ws.send_close()

    def close(self) -> None:
        self.ws.shutdown()


@dataclass
class PahoClient(MqttClient, Aborter):
    """The shipped paho-mqtt test client, addressed through a backend (fakebroker or the real node)."""

    def __init__(self, backend: Backend, client_id: str, *, clean_session: bool = True, keepalive: int = 60,
                 will: tuple[str, bytes, int, bool] | None = None, username: Any = _DEFAULT,
                 password: Any = _DEFAULT, sink: list[Received] | None = None, websocket: bool = False,
                 protocol: int = mqtt.MQTTv311) -> None:
        """``sink``: the list to collect received messages in (a new one by default), so that several
        connections of one client id can share it. ``websocket``: MQTT over WebSocket (``/ws``)."""
        self.backend = backend
        user = backend.username if username is _DEFAULT else username
        pw = backend.password.decode() if password is _DEFAULT else password
        host, port = backend.web_mqtt if websocket else backend.mqtt
        address: tuple[str, int] | str = f"ws://{host}:{port}/ws" if websocket else (host, port)
        super().__init__(address, client_id, protocol=3 if protocol == mqtt.MQTTv31 else 4,
                         clean_session=clean_session, keepalive=keepalive, will=will, username=user, password=pw,
                         sink=sink)
        self.websocket = websocket
        self.closed = self.disconnected

    def connect(self) -> tuple[bool, int]:
        """Connect and wait for the CONNACK: (session_present, return code)."""
        self.backend.register(self.client_id, self)
        return super().connect()

    def dropped(self) -> None:
        if not self.disconnected.wait(TIMEOUT):
            raise AssertionError(f"{self.client_id}: the broker did not drop the connection")
        self.stop()


@contextlib.contextmanager
def backend_for(name: str) -> Iterator[Backend]:
    backend: Backend = FakeBackend() if name == "fake" else RabbitBackend()
    try:
        yield backend
    finally:
        backend.close()
