"""fakebroker: an in-memory RabbitMQ test double that speaks MQTT over real sockets.

    with fakebroker.start() as broker:
        client.connect(*broker.mqtt)
        ...
        broker.clock.advance(90)

See the README and docs/ for the full guide.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml and `fakebroker --version` read it

# The public names are imported on first use: `fakebroker serve` and `fakebroker --version` must not pay for the
# model, the facade and every protocol before they run. `from fakebroker import start` works as before.
_PUBLIC = {
    "VirtualClock": "clock", "WallClock": "clock",
    "Options": "config",
    "AccessRefused": "errors", "AmqpError": "errors", "BrokerError": "errors", "ChannelError": "errors",
    "CommandInvalid": "errors", "ConnectionLevelError": "errors", "NotAllowed": "errors", "NotFound": "errors",
    "PreconditionFailed": "errors", "ResourceLocked": "errors",
    "AsyncBroker": "facade.aio", "serve": "facade.aio",
    "ThreadedBroker": "facade.threaded", "start": "facade.threaded",
    "BindingInfo": "facade.views", "ClientInfo": "facade.views", "ExchangeInfo": "facade.views",
    "MessageLog": "facade.views", "QueueInfo": "facade.views",
    "Delivery": "model", "LoggedMessage": "model", "Message": "model",
    "MessageFault": "observe.faults", "MessageTimeout": "observe.matching",
    "Address": "server.runtime",
}
#: Subpackages and modules reachable as attributes (``fakebroker.errors``) after a bare ``import fakebroker``.
_SUBMODULES = frozenset({
    "cli", "clients", "clock", "config", "errors", "facade", "model", "node", "observe", "protocols", "pytest_plugin",
    "server", "testing",
})

if TYPE_CHECKING:
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
    from .facade.aio import AsyncBroker, serve
    from .facade.threaded import ThreadedBroker, start
    from .facade.views import BindingInfo, ClientInfo, ExchangeInfo, MessageLog, QueueInfo
    from .model import Delivery, LoggedMessage, Message
    from .observe.faults import MessageFault
    from .observe.matching import MessageTimeout
    from .server.runtime import Address


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # once: later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC, *_SUBMODULES})


__all__ = [
    "AccessRefused", "Address", "AmqpError", "AsyncBroker", "BindingInfo", "BrokerError", "ChannelError",
    "ClientInfo", "CommandInvalid", "ConnectionLevelError", "Delivery", "ExchangeInfo", "LoggedMessage", "Message",
    "MessageFault", "MessageLog", "MessageTimeout", "NotAllowed", "NotFound", "Options", "PreconditionFailed",
    "QueueInfo", "ResourceLocked", "ThreadedBroker", "VirtualClock", "WallClock", "serve", "start",
]
