"""What the MQTT plugin keeps per node, beyond any one connection: the client-id registry and retained store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...model import Message

if TYPE_CHECKING:
    from .session import MqttSession


class MqttState:
    """One per node (``host.state(MqttState)``); survives restarts, as RabbitMQ's retained store does."""

    def __init__(self) -> None:
        # (vhost, client id) -> live session, for takeover.
        self.sessions: dict[tuple[str, str], MqttSession] = {}
        # vhost -> topic -> (message, qos); RabbitMQ keeps one retained store per vhost.
        self.retained: dict[str, dict[str, tuple[Message, int]]] = {}

    def retained_in(self, vhost: str) -> dict[str, tuple[Message, int]]:
        return self.retained.setdefault(vhost, {})

    def reset(self) -> None:
        """Forget the retained messages (the control plane's reset, once every MQTT connection has closed)."""
        self.retained.clear()
        self.sessions.clear()
