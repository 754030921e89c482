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
        self.tg: anyio.abc.TaskGroup | None = None
        self.thread_id = 0  # the event loop's thread, set when the node starts

    def api_channel(self, vhost: str) -> Channel:
        channel = self.api_channels.get(vhost)
        if channel is None:
            channel = self.api_channels[vhost] = Channel(self.model.vhost(vhost), self.api_owner, "python-api")
        return channel

    def listeners(self) -> dict[str, tuple[int, SessionFactory]]:
        from .protocols.mqtt.session import MqttSession
        from .server.websocket import WebSocketSession

        def mqtt(info: ConnectionInfo) -> Session:
            return MqttSession(info, self)

        def web_mqtt(info: ConnectionInfo) -> Session:
            return WebSocketSession(info, mqtt, path="/ws", subprotocols=("mqtt",), require_subprotocol=False,
                                    frame_type="binary")

        wanted: dict[str, tuple[int | None, SessionFactory]] = {
            "mqtt": (self.options.mqtt_port, mqtt),
            "web_mqtt": (self.options.web_mqtt_port, web_mqtt),
        }
        return {name: (port, factory) for name, (port, factory) in wanted.items() if port is not None}

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        self.tg = tg
        await self.runtime.start(tg, self.listeners())

    async def aclose(self) -> None:
        await self.runtime.aclose()

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
