"""Errors with RabbitMQ's AMQP 0-9-1 reply codes and wording.

``str(error)`` reads exactly like RabbitMQ's channel-close text, e.g.
``NOT_FOUND - no queue 'orders' in vhost '/'``, so a test can compare it with what a real broker says.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base class of every error fakebroker raises on purpose."""


class AmqpError(BrokerError):
    """An AMQP 0-9-1 exception: ``code`` is the reply code, ``name`` its constant, ``text`` the close text."""

    code = 0
    name = "INTERNAL_ERROR"

    def __init__(self, explanation: str) -> None:
        self.explanation = explanation
        super().__init__(f"{self.name} - {explanation}")

    @property
    def text(self) -> str:
        return str(self)


class ChannelError(AmqpError):
    """A channel-level exception: RabbitMQ closes the channel, the connection stays open."""

    name = "CHANNEL_ERROR"


class ConnectionLevelError(AmqpError):
    """A connection-level exception: RabbitMQ closes the whole connection."""

    name = "CONNECTION_FORCED"


class AccessRefused(ChannelError):
    code = 403
    name = "ACCESS_REFUSED"


class NotFound(ChannelError):
    code = 404
    name = "NOT_FOUND"


class ResourceLocked(ChannelError):
    code = 405
    name = "RESOURCE_LOCKED"


class PreconditionFailed(ChannelError):
    code = 406
    name = "PRECONDITION_FAILED"


class NotAllowed(ConnectionLevelError):
    """A connection-level refusal, e.g. an unknown vhost."""

    code = 530
    name = "NOT_ALLOWED"


class CommandInvalid(ConnectionLevelError):
    """A connection-level error, e.g. an unknown exchange type."""

    code = 503
    name = "COMMAND_INVALID"


class ChannelStateError(ConnectionLevelError):
    """A method on a channel in the wrong state (AMQP's hard ``channel-error``): the connection closes."""

    code = 504
    name = "CHANNEL_ERROR"


class UnexpectedFrame(ConnectionLevelError):
    code = 505
    name = "UNEXPECTED_FRAME"


class NotImplementedByBroker(ConnectionLevelError):
    """A method or flag RabbitMQ does not implement (``immediate``, ``prefetch_size``, ``channel.flow`` off)."""

    code = 540
    name = "NOT_IMPLEMENTED"
