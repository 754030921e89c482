"""The public face of a running broker: :func:`start` (threaded) and :func:`serve` (inside an anyio loop).

Both give an object with the same synchronous methods. The broker's state lives on its event loop; a
:class:`ThreadedBroker` reaches it through anyio's blocking portal, an :class:`AsyncBroker` calls straight in
because the caller already is on that loop. The handle is assembled from parts by concern: ``core`` (the node,
the dispatcher, addresses, events), ``management``, ``views``, ``expect`` (assertions and waits) and ``faults``.

The names below are imported on first use, so that importing one part (``fakebroker serve`` needs only
``core``) does not import them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_NAMES = {
    "AsyncBroker": "aio", "serve": "aio",
    "BrokerAPI": "api",
    "ClockProxy": "threaded", "ThreadedBroker": "threaded", "start": "threaded",
    "BindingInfo": "views", "ClientInfo": "views", "ClientList": "views", "ExchangeInfo": "views",
    "MessageLog": "views", "QueueInfo": "views", "message_matches": "views",
}

if TYPE_CHECKING:
    from .aio import AsyncBroker, serve
    from .api import BrokerAPI
    from .threaded import ClockProxy, ThreadedBroker, start
    from .views import BindingInfo, ClientInfo, ClientList, ExchangeInfo, MessageLog, QueueInfo, message_matches


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncBroker", "BindingInfo", "BrokerAPI", "ClientInfo", "ClientList", "ClockProxy", "ExchangeInfo",
    "MessageLog", "QueueInfo", "ThreadedBroker", "message_matches", "serve", "start",
]
