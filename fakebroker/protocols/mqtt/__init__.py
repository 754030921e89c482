"""MQTT 3.1/3.1.1 over TCP and WebSocket, as RabbitMQ's rabbitmq_mqtt and rabbitmq_web_mqtt plugins serve it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..base import ConnectionInfo, Criterion, ListenerSpec, ProtocolSpec, Session, SessionHost
from .profile import get_profile, to_amqp, to_mqtt

if TYPE_CHECKING:
    from ...model import LoggedMessage


@dataclass
class MqttSettings:
    """The MQTT plugin's settings (RabbitMQ's ``mqtt.*`` keys); broker options ``mqtt_<field>``."""

    vhost: str | None = None  # None: the broker's ``vhost`` option (RabbitMQ: mqtt.vhost)
    exchange: str = "amq.topic"
    prefetch: int = 10
    subscription_ttl: int | None = 86_400_000  # ms; None = persistent sessions never expire
    #: Largest Remaining Length accepted once a CONNECT is accepted (RabbitMQ 3.13+:
    #: ``mqtt.max_packet_size_authenticated``, 16 MiB; 3.10 has no limit) ...
    max_packet_size: int = 16 * 1024 * 1024
    #: ... and before (``mqtt.max_packet_size_unauthenticated``, 64 KiB): a CONNECT is never larger.
    max_packet_size_unauthenticated: int = 65_536
    profile: str = "rabbitmq-3.x"

    def validate(self) -> None:
        if self.prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        if self.subscription_ttl is not None and self.subscription_ttl <= 0:
            raise ValueError("subscription_ttl is in milliseconds and must be positive (or None)")
        for name in ("max_packet_size", "max_packet_size_unauthenticated"):
            if not 1 <= getattr(self, name) <= 268_435_455:
                raise ValueError(f"{name} must be between 1 and 268,435,455 (MQTT's largest Remaining Length)")
        get_profile(self.profile)  # unknown: fail here, not in the first MQTT connection's session


def _mqtt(info: ConnectionInfo, host: SessionHost) -> Session:
    from .session import MqttSession

    return MqttSession(info, host)


def _web_mqtt(info: ConnectionInfo, host: SessionHost) -> Session:
    from ..websocket import WebSocketSession

    # "mqttv3.1" is what MQTT 3.1 clients (paho, MQTT.js) offer; RabbitMQ 3.10 accepts it as well.
    return WebSocketSession(info, lambda inner: _mqtt(inner, host), path="/ws", subprotocols=("mqtt", "mqttv3.1"),
                            require_subprotocol=False, frame_type="binary")


def _topic_matches(m: LoggedMessage, wanted: Any) -> bool:
    from ...model.topic import topic_matches

    return topic_matches(to_amqp(wanted), m.routing_key)


PROTOCOL = ProtocolSpec(
    name="mqtt",
    listeners=(
        ListenerSpec("mqtt", "mqtt", _mqtt, 1883, "mqtt", "MQTT 3.1/3.1.1"),
        ListenerSpec("web_mqtt", "mqtt", _web_mqtt, 15675, "web_mqtt_url", "MQTT over WebSocket",
                     url="ws://{host}:{port}/ws", websocket_path="/ws", subprotocols=("mqtt", "mqttv3.1")),
    ),
    settings=MqttSettings,
    aliases={"exchange": "mqtt_exchange", "prefetch": "mqtt_prefetch", "subscription_ttl": "mqtt_subscription_ttl",
             "max_packet_size": "mqtt_max_packet_size",
             "max_packet_size_authenticated": "mqtt_max_packet_size",
             "max_packet_size_unauthenticated": "mqtt_max_packet_size_unauthenticated"},
    criteria={
        "topic": Criterion(
            "an MQTT topic filter (+ and # wildcards) matched against the routing key as RabbitMQ maps it",
            _topic_matches, lambda m: to_mqtt(m.routing_key)),
    },
)

__all__ = ["PROTOCOL", "MqttSettings"]
