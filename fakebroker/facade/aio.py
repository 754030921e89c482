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
        """The broker's clock itself (:class:`~fakebroker.VirtualClock` by default): read ``now()``; move it with
        :meth:`advance`, which also waits for the bytes the timers produce.

        Examples:
            >>> import anyio
            >>> async def main():
            ...     async with fakebroker.serve() as broker:
            ...         await broker.advance(5)
            ...         return broker.clock.now()
            >>> anyio.run(main)
            5.0
        """
        return self._node.clock

    async def advance(self, seconds: float) -> None:
        """Advance the virtual clock and wait until the effects have been written to the sockets (see
        ``ThreadedBroker.clock.advance``).

        Examples:
            >>> import anyio
            >>> async def main():
            ...     async with fakebroker.serve() as broker:
            ...         broker.declare_queue("jobs", arguments={"x-message-ttl": 60_000})
            ...         broker.publish("", "jobs", b"job 1")
            ...         await broker.advance(60)
            ...         return broker.queues["jobs"].messages
            >>> anyio.run(main)
            0
        """
        await self._advance(seconds)

    def disconnect(self, client_id: Target) -> None:
        """Drop the client's TCP connection with no protocol goodbye (its Last Will fires at once); see
        ``ThreadedBroker.disconnect``. A blocking client is driven from a worker thread, off the broker's loop.

        Examples:
            >>> import anyio
            >>> async def main():
            ...     async with fakebroker.serve() as broker:
            ...         device = MqttClient(broker.mqtt, "device-1", will=("status/device-1", b"offline", 0, False))
            ...         await anyio.to_thread.run_sync(device.connect)
            ...         broker.disconnect("device-1")
            ...         device.close()
            ...         return broker.assert_published(topic="status/device-1").bodies
            >>> anyio.run(main)
            [b'offline']
        """
        self._journal.note(f"fault: disconnect({client_id!r})")
        for conn in self._connections(client_id):
            conn.abort()

    async def wait_for_message(self, timeout: float = 5.0, **criteria: Any) -> LoggedMessage:
        """Wait until a message matching ``criteria`` has been routed (see ``ThreadedBroker.wait_for_message``;
        ``timeout`` is measured by the event loop's clock).

        Examples:
            >>> import anyio
            >>> async def main():
            ...     async with fakebroker.serve() as broker:
            ...         device = MqttClient(broker.mqtt, "device-1")
            ...         await anyio.to_thread.run_sync(device.connect)
            ...         device.publish("status/device-1", b"online")  # QoS 0: does not wait for the broker
            ...         entry = await broker.wait_for_message(topic="status/+")
            ...         device.close()
            ...         return entry.body
            >>> anyio.run(main)
            b'online'
        """
        __tracebackhide__ = True
        return (await self._wait(1, timeout, criteria))[0]

    async def wait_for_messages(self, count: int, timeout: float = 5.0, **criteria: Any) -> MessageLog:
        """Wait for at least ``count`` messages matching ``criteria``; returns them all.

        Examples:
            >>> import anyio
            >>> async def main():
            ...     async with fakebroker.serve() as broker:
            ...         device = MqttClient(broker.mqtt, "device-1")
            ...         await anyio.to_thread.run_sync(device.connect)
            ...         for n in range(3):
            ...             device.publish(f"readings/{n}", b"21.5")
            ...         log = await broker.wait_for_messages(3, topic="readings/#")
            ...         device.close()
            ...         return len(log)
            >>> anyio.run(main)
            3
        """
        __tracebackhide__ = True
        return await self._wait(count, timeout, criteria)

    async def wait_for_client(self, client_id: str, *, subscribed: str | None = None,
                              timeout: float = 5.0) -> ClientInfo:
        """Wait until ``client_id`` is connected (and subscribed to ``subscribed``); see the threaded face.

        Examples:
            >>> import anyio
            >>> async def main():
            ...     async with fakebroker.serve() as broker:
            ...         device = MqttClient(broker.mqtt, "device-1")
            ...         async with anyio.create_task_group() as tg:
            ...             tg.start_soon(anyio.to_thread.run_sync, device.connect)
            ...             client = await broker.wait_for_client("device-1")
            ...         device.close()
            ...         return client.protocol
            >>> anyio.run(main)
            'mqtt'
        """
        __tracebackhide__ = True
        found = await self._wait_client(client_id, True, subscribed, timeout)
        assert found is not None
        return found

    async def wait_for_disconnect(self, client_id: str, *, timeout: float = 5.0) -> None:
        """Wait until no connection with ``client_id`` is left.

        Examples:
            >>> import anyio
            >>> async def main():
            ...     async with fakebroker.serve() as broker:
            ...         device = MqttClient(broker.mqtt, "device-1")
            ...         await anyio.to_thread.run_sync(device.connect)
            ...         device.abort()
            ...         await broker.wait_for_disconnect("device-1")
            ...         return broker.clients
            >>> anyio.run(main)
            []
        """
        __tracebackhide__ = True
        await self._wait_client(client_id, False, None, timeout)

    async def reset(self) -> None:
        """Empty the broker as if it had just started; see ``ThreadedBroker.reset``.

        Examples:
            >>> import anyio
            >>> async def main():
            ...     async with fakebroker.serve() as broker:
            ...         broker.declare_queue("leftover")
            ...         await broker.reset()
            ...         return "leftover" in broker.queues
            >>> anyio.run(main)
            False
        """
        await self._reset()

    async def restart(self) -> None:
        """Restart the broker as a RabbitMQ node restart; see ``ThreadedBroker.restart``.

        Examples:
            >>> import anyio
            >>> async def main():
            ...     async with fakebroker.serve() as broker:
            ...         broker.declare_queue("orders", durable=True)
            ...         broker.declare_queue("scratch")
            ...         await broker.restart()
            ...         return list(broker.queues)
            >>> anyio.run(main)
            ['orders']
        """
        await self._restart()

    @asynccontextmanager
    async def refuse_connections(self) -> AsyncIterator[None]:
        """``async with broker.refuse_connections():`` new connections are refused until the block ends.

        Examples:
            >>> import anyio
            >>> async def main():
            ...     async with fakebroker.serve() as broker:
            ...         async with broker.refuse_connections():
            ...             try:
            ...                 await anyio.connect_tcp(*broker.mqtt)
            ...             except OSError:
            ...                 return "refused"
            >>> anyio.run(main)
            'refused'
        """
        await self._refuse(True)
        try:
            yield
        finally:
            await self._refuse(False)

    def __repr__(self) -> str:
        return f"<fakebroker.AsyncBroker {', '.join(f'{k}={v.host}:{v.port}' for k, v in self.addresses.items())}>"




@asynccontextmanager
async def serve(**options: Any) -> AsyncIterator[AsyncBroker]:
    """Run a broker inside the current anyio event loop (asyncio or trio) for the ``async with`` block.

    ``options`` are those of :func:`start`. Calls that wait (``advance``, the waits, ``restart``) are awaited;
    the others are the threaded broker's, called directly. A blocking client (paho-mqtt) must run in a worker
    thread (``anyio.to_thread.run_sync``), or it stops the loop the broker runs on.

    Examples:
        >>> import anyio
        >>> async def main():
        ...     async with fakebroker.serve() as broker:
        ...         broker.declare_queue("jobs")
        ...         broker.publish("", "jobs", b"job 1")
        ...         return broker.get("jobs").body
        >>> anyio.run(main, backend="trio")
        b'job 1'
    """
    opts = Options.from_kwargs(**options)
    async with _run_node(opts) as (node, journal):
        yield AsyncBroker(node, journal)


