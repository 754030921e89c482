"""The public face of a running broker: :func:`start` (threaded) and :func:`serve` (inside an anyio loop).

Both give an object with the same synchronous methods. The broker's state lives on its event loop; a
:class:`ThreadedBroker` reaches it through anyio's blocking portal, an :class:`AsyncBroker` calls straight in
because the caller already is on that loop. The handle is assembled from parts by concern: ``core`` (the node,
the dispatcher, addresses, events), ``management``, ``views``, ``expect`` (assertions and waits) and ``faults``.
"""

from .aio import AsyncBroker, serve
from .api import BrokerAPI
from .threaded import ClockProxy, ThreadedBroker, start
from .views import BindingInfo, ClientInfo, ClientList, ExchangeInfo, MessageLog, QueueInfo, message_matches

__all__ = [
    "AsyncBroker", "BindingInfo", "BrokerAPI", "ClientInfo", "ClientList", "ClockProxy", "ExchangeInfo",
    "MessageLog", "QueueInfo", "ThreadedBroker", "message_matches", "serve", "start",
]
