"""fakebroker: an in-memory RabbitMQ test double that speaks MQTT over real sockets.

    with fakebroker.start() as broker:
        client.connect(*broker.mqtt)
        ...
        broker.clock.advance(90)

See the README and docs/ for the full guide.
"""

from .clock import VirtualClock, WallClock
from .config import Options
from .errors import (
    AccessRefused,
    AmqpError,
    BrokerError,
    ChannelError,
    CommandInvalid,
    ConnectionLevelError,
    NotAllowed,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)
from .facade import (
    AsyncBroker,
    BindingInfo,
    ClientInfo,
    ExchangeInfo,
    MessageLog,
    QueueInfo,
    ThreadedBroker,
    serve,
    start,
)
from .model import Delivery, LoggedMessage, Message
from .observe import MessageFault, MessageTimeout
from .server.runtime import Address

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml and `fakebroker --version` read it

__all__ = [
    "AccessRefused", "Address", "AmqpError", "AsyncBroker", "BindingInfo", "BrokerError", "ChannelError",
    "ClientInfo", "CommandInvalid", "ConnectionLevelError", "Delivery", "ExchangeInfo", "LoggedMessage", "Message",
    "MessageFault", "MessageLog", "MessageTimeout", "NotAllowed", "NotFound", "Options", "PreconditionFailed",
    "QueueInfo", "ResourceLocked", "ThreadedBroker", "VirtualClock", "WallClock", "serve", "start",
]
