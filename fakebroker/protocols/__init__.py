"""The protocols fakebroker speaks. Adding one is a package here and one line in :data:`PROTOCOLS`."""

from __future__ import annotations

from .amqp import PROTOCOL as AMQP
from .base import Criterion, ListenerSpec, ProtocolSpec
from .http import PROTOCOL as HTTP
from .mqtt import PROTOCOL as MQTT
from .stomp import PROTOCOL as STOMP

PROTOCOLS: tuple[ProtocolSpec, ...] = (MQTT, STOMP, AMQP, HTTP)


def listener_specs() -> tuple[ListenerSpec, ...]:
    return tuple(spec for protocol in PROTOCOLS for spec in protocol.listeners)


def criteria() -> dict[str, Criterion]:
    """The message criteria every protocol adds, by name."""
    return {name: c for protocol in PROTOCOLS for name, c in protocol.criteria.items()}


__all__ = ["PROTOCOLS", "criteria", "listener_specs"]
