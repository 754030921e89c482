"""AMQP 0-9-1, as RabbitMQ 3.10 serves it on port 5672."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import ConnectionInfo, ListenerSpec, ProtocolSpec, Session, SessionHost


@dataclass
class AmqpSettings:
    """What connection.tune offers (RabbitMQ's ``channel_max``, ``frame_max``, ``heartbeat``); options
    ``amqp_<field>``."""

    channel_max: int = 2047
    frame_max: int = 131072
    heartbeat: int = 60  # seconds; 0 offers none
    #: RabbitMQ's ``max_message_size``: a larger content header closes the channel.
    max_message_size: int = 134_217_728

    def validate(self) -> None:
        if not 0 <= self.channel_max <= 65535:
            raise ValueError("amqp_channel_max must be 0..65535")
        if self.frame_max != 0 and self.frame_max < 4096:
            raise ValueError("amqp_frame_max must be 0 (no limit) or at least 4096")
        if self.heartbeat < 0:
            raise ValueError("amqp_heartbeat must be >= 0 seconds")


def _amqp(info: ConnectionInfo, host: SessionHost) -> Session:
    from .session import AmqpSession

    return AmqpSession(info, host)


PROTOCOL = ProtocolSpec(
    name="amqp",
    listeners=(
        ListenerSpec("amqp", "amqp", _amqp, 5672, "amqp", "AMQP 0-9-1",
                     more_urls={"amqp_url": "amqp://guest:guest@{host}:{port}/%2F"}),
    ),
    settings=AmqpSettings,
)

__all__ = ["PROTOCOL", "AmqpSettings"]
