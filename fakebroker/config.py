"""Broker options. Names follow RabbitMQ's configuration keys wherever RabbitMQ has one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock
from .protocols.mqtt.profile import get_profile


@dataclass
class Options:
    # Listeners: a port number, 0 for a free port, None to leave the listener off.
    host: str = "127.0.0.1"
    mqtt_port: int | None = 0
    web_mqtt_port: int | None = 0
    clock: str | Clock = "virtual"

    # Authentication (RabbitMQ: default_user/default_pass, mqtt.allow_anonymous).
    users: dict[str, Any] = field(default_factory=lambda: {"guest": "guest"})
    vhosts: tuple[str, ...] = ("/",)
    allow_anonymous: bool = True
    default_user: str = "guest"
    default_pass: str = "guest"

    # MQTT plugin settings (rabbitmq_mqtt app env).
    vhost: str = "/"
    exchange: str = "amq.topic"
    prefetch: int = 10
    subscription_ttl: int | None = 86_400_000  # ms; None = sessions never expire
    max_packet_size: int = 268_435_455  # RabbitMQ 3.10 accepts anything MQTT 3.1.1 can frame
    mqtt_profile: str = "rabbitmq-3.x"
    retain_log: int | None = None  # keep at most this many entries in the message log (None = all)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Options:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(
                f"unknown fakebroker option(s): {', '.join(unknown)}; valid options: {', '.join(sorted(names))}"
            )
        options = cls(**kwargs)
        options.validate()
        return options

    def validate(self) -> None:
        if self.prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        if self.subscription_ttl is not None and self.subscription_ttl <= 0:
            raise ValueError("subscription_ttl is in milliseconds and must be positive (or None)")
        get_profile(self.mqtt_profile)  # unknown: fail here, not in the first MQTT connection's session
        if self.vhost not in self.vhosts:
            self.vhosts = (*self.vhosts, self.vhost)

    def replace(self, **kwargs: Any) -> Options:
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return Options.from_kwargs(**{**current, **kwargs})
