"""A broker node: the model, the runtime and the protocol listeners wired together, on one event loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .clock import make_clock
from .config import Options
from .model import Broker, Channel
from .protocols.base import ConnectionInfo, Session
from .server.runtime import Address, Connection, Runtime, SessionFactory

if TYPE_CHECKING:
    from .protocols.mqtt.session import MqttSession


class ApiOwner:
    """The connection that owns exclusive queues declared through the Python API; it never closes."""

    def __repr__(self) -> str:
        return "<python-api>"


class Node:
    """Everything one broker is. Only ever touched on its event loop."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.clock = make_clock(options.clock)
        self.model = Broker(self.clock, users=options.users, vhosts=options.vhosts, log_limit=options.retain_log)
        self.runtime = Runtime(self.clock, options.host)
        self.runtime.on_connect = self._on_connect
        self.runtime.on_disconnect = self._on_disconnect
        self.api_owner = ApiOwner()
        self.api_channels: dict[str, Channel] = {}
        # MQTT client id -> live session, for takeover (one connection per client id and vhost).
        self.mqtt_sessions: dict[tuple[str, str], MqttSession] = {}
        self.thread_id = 0  # the event loop's thread, set when the node starts
        # True while the node goes down (stop, restart): connections are dropped with no Last Will, as when
        # RabbitMQ stops its MQTT plugin (observed on 3.10 with `rabbitmqctl stop_app`).
        self.stopping = False
        self.refusing = False  # listeners closed by refuse_connections()

    def api_channel(self, vhost: str) -> Channel:
        channel = self.api_channels.get(vhost)
        if channel is None:
            channel = self.api_channels[vhost] = Channel(self.model.vhost(vhost), self.api_owner, "python-api")
        return channel

    def listeners(self) -> dict[str, tuple[int, SessionFactory]]:
        from .protocols.mqtt.session import MqttSession
        from .protocols.websocket import WebSocketSession

        def mqtt(info: ConnectionInfo) -> Session:
            return MqttSession(info, self)

        def web_mqtt(info: ConnectionInfo) -> Session:
            # "mqttv3.1" is what MQTT 3.1 clients (paho, MQTT.js) offer; RabbitMQ 3.10 accepts it as well.
            return WebSocketSession(info, mqtt, path="/ws", subprotocols=("mqtt", "mqttv3.1"),
                                    require_subprotocol=False, frame_type="binary")

        wanted: dict[str, tuple[int | None, SessionFactory]] = {
            "mqtt": (self.options.mqtt_port, mqtt),
            "web_mqtt": (self.options.web_mqtt_port, web_mqtt),
        }
        return {name: (port, factory) for name, (port, factory) in wanted.items() if port is not None}

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        await self.runtime.start(tg, self.listeners())

    async def aclose(self) -> None:
        self.stopping = True
        await self.runtime.aclose()

    async def refuse(self, refuse: bool) -> None:
        """Close (True) or reopen (False) the listening sockets, keeping the ports."""
        self.refusing = refuse
        if refuse:
            await self.runtime.close_listeners()
        else:
            await self.runtime.reopen_listeners()

    async def restart(self) -> None:
        """A node restart: listeners close, every connection drops (no wills), the model keeps what is
        durable (:meth:`Broker.restart`), and the listeners reopen on the same ports (unless refusing)."""
        await self.runtime.close_listeners()
        self.stopping = True
        try:
            await self.runtime.drop_all()
        finally:
            self.stopping = False
        for channel in self.api_channels.values():
            channel.close()  # requeues what basic.get handed out unacknowledged
        self.api_channels.clear()
        self.api_owner = ApiOwner()
        self.model.restart()
        if not self.refusing:
            await self.runtime.reopen_listeners()

    @property
    def addresses(self) -> dict[str, Address]:
        return dict(self.runtime.addresses)

    def _on_connect(self, conn: Connection) -> None:
        self.model.emit("connect", conn)

    def _on_disconnect(self, conn: Connection) -> None:
        self.model.emit("disconnect", conn)

    def describe_client(self, conn: Connection) -> dict[str, Any]:
        session = conn.session
        return {
            "id": conn.id,
            "listener": conn.listener,
            "protocol": session.protocol,
            "client_id": session.client_id,
            "user": session.user,
            "peer": conn.peer,
            "connected_at": conn.opened_at,
            "stalled": conn.stalled,
            **session.describe(),
        }
