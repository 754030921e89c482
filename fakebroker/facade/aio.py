"""The async face: :func:`serve` runs the broker inside the caller's anyio loop (asyncio or trio)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from ..clock import Clock
from ..config import Options
from ..model import LoggedMessage
from ..node import Node
from ..observe import (
    Journal,
)
from .api import BrokerAPI
from .core import _run_node
from .faults import Target
from .views import ClientInfo, MessageLog

T = TypeVar("T")


# -- async face ---------------------------------------------------------------------------------------
class AsyncBroker(BrokerAPI):
    """A broker running in the caller's anyio event loop; see :func:`serve`."""

    def __init__(self, node: Node, journal: Journal) -> None:
        self._setup(node, journal)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)

    @property
    def clock(self) -> Clock:
        return self._node.clock

    async def advance(self, seconds: float) -> None:
        """Advance the virtual clock and wait until the effects have been written to the sockets."""
        await self._advance(seconds)

    def disconnect(self, client_id: Target) -> None:
        """Drop the client's TCP connection with no protocol goodbye (its Last Will fires at once)."""
        self._journal.note(f"fault: disconnect({client_id!r})")
        for conn in self._connections(client_id):
            conn.abort()

    async def wait_for_message(self, timeout: float = 5.0, **criteria: Any) -> LoggedMessage:
        """Wait until a message matching ``criteria`` has been routed (see ``ThreadedBroker.wait_for_message``;
        ``timeout`` is measured by the event loop's clock)."""
        __tracebackhide__ = True
        return (await self._wait(1, timeout, criteria))[0]

    async def wait_for_messages(self, count: int, timeout: float = 5.0, **criteria: Any) -> MessageLog:
        """Wait for at least ``count`` messages matching ``criteria``; returns them all."""
        __tracebackhide__ = True
        return await self._wait(count, timeout, criteria)

    async def wait_for_client(self, client_id: str, *, subscribed: str | None = None,
                              timeout: float = 5.0) -> ClientInfo:
        """Wait until ``client_id`` is connected (and subscribed to ``subscribed``); see the threaded face."""
        __tracebackhide__ = True
        found = await self._wait_client(client_id, True, subscribed, timeout)
        assert found is not None
        return found

    async def wait_for_disconnect(self, client_id: str, *, timeout: float = 5.0) -> None:
        """Wait until no connection with ``client_id`` is left."""
        __tracebackhide__ = True
        await self._wait_client(client_id, False, None, timeout)

    async def restart(self) -> None:
        """Restart the broker as a RabbitMQ node restart; see ``ThreadedBroker.restart``."""
        await self._restart()

    @asynccontextmanager
    async def refuse_connections(self) -> AsyncIterator[None]:
        """``async with broker.refuse_connections():`` new connections are refused until the block ends."""
        await self._refuse(True)
        try:
            yield
        finally:
            await self._refuse(False)

    def __repr__(self) -> str:
        return f"<fakebroker.AsyncBroker {', '.join(f'{k}={v.host}:{v.port}' for k, v in self.addresses.items())}>"




@asynccontextmanager
async def serve(**options: Any) -> AsyncIterator[AsyncBroker]:
    """Run a broker inside the current anyio event loop (asyncio or trio) for the ``async with`` block."""
    opts = Options.from_kwargs(**options)
    async with _run_node(opts) as (node, journal):
        yield AsyncBroker(node, journal)


