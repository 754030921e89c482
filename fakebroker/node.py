"""A broker node: the model, the runtime and the protocol listeners wired together, on one event loop.

The node is the :class:`~fakebroker.protocols.base.SessionHost` of every session it creates.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc

from .clock import make_clock
from .config import Options
from .model import Broker, Channel
from .protocols import listener_specs
from .protocols.base import ConnectionInfo, ListenerSpec, ProtocolStates, Session, SessionFactory
from .server.runtime import Address, Connection, Runtime

if TYPE_CHECKING:
    from .observe import Journal

S = TypeVar("S")


#: Listeners of the test's operator rather than of the broker's clients (``ListenerSpec.operator``): they stay
#: open while the broker refuses connections or restarts, and their connections survive a restart or a reset.
OPERATOR_LISTENERS = tuple(spec.name for spec in listener_specs() if spec.operator)


class ApiOwner:
    """The connection that owns exclusive queues declared through the Python API; it never closes."""

    def __repr__(self) -> str:
        return "<python-api>"


class Node:
    """Everything one broker is. Only ever touched on its event loop."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.clock = make_clock(options.clock)
        self.model = Broker(self.clock, users=options.users, vhosts=options.vhosts, log_limit=options.retain_log)
        self.runtime = Runtime(self.clock, options.host, handshake_timeout=options.handshake_timeout,
                               max_connections=options.max_connections,
                               output_limit=options.output_buffer_limit)
        self.runtime.on_connect = self._on_connect
        self.runtime.on_disconnect = self._on_disconnect
        self.api_owner = ApiOwner()
        self.api_channels: dict[str, Channel] = {}
        self._states = ProtocolStates()
        self.thread_id = 0  # the event loop's thread, set when the node starts
        # True while the node goes down (stop, restart): connections are dropped with no Last Will, as when
        # RabbitMQ stops its MQTT plugin (observed on 3.10 with `rabbitmqctl stop_app`).
        self.stopping = False
        self.refusing = False  # listeners closed by refuse_connections()
        #: Set by the facade once the node runs: the task group and journal the HTTP control plane uses.
        self.task_group: anyio.abc.TaskGroup | None = None
        self.journal: Journal | None = None
        self._operator: Any = None

    # -- SessionHost ----------------------------------------------------------------------------------
    def state(self, kind: Callable[[], S]) -> S:
        return self._states.get(kind)

    def emit(self, event: str, *args: Any) -> None:
        self.model.emit(event, *args)

    def listening(self) -> dict[str, int]:
        return self.runtime.listening()

    def operator(self) -> Any:
        if self._operator is None:
            if self.journal is None or self.task_group is None:
                raise RuntimeError("the control plane needs a running broker node")
            from .facade.aio import AsyncBroker  # the handle sits above the node

            self._operator = AsyncBroker(self, self.journal)
        return self._operator

    def spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self.task_group is None:
            raise RuntimeError("the node is not running")
        self.task_group.start_soon(work)

    # -- the Python API's own channel -------------------------------------------------------------------
    def api_channel(self, vhost: str) -> Channel:
        channel = self.api_channels.get(vhost)
        if channel is None:
            channel = self.api_channels[vhost] = Channel(self.model.vhost(vhost), self.api_owner, "python-api")
        return channel

    # -- listeners ----------------------------------------------------------------------------------------
    def listener_specs(self) -> list[ListenerSpec]:
        """The listeners this node opens (those whose port option is not None), in registration order."""
        return [spec for spec in listener_specs() if self.options.ports.get(spec.name) is not None]

    def _factory(self, spec: ListenerSpec) -> SessionFactory:
        def make(info: ConnectionInfo) -> Session:
            return spec.session(info, self)

        return make

    async def start(self, tg: anyio.abc.TaskGroup, sockets: dict[str, socket.socket] | None = None) -> None:
        listeners: dict[str, tuple[int, SessionFactory]] = {}
        for spec in self.listener_specs():
            port = self.options.ports[spec.name]
            assert port is not None
            listeners[spec.name] = (port, self._factory(spec))
        self.task_group = tg
        await self.runtime.start(tg, listeners, sockets)

    async def aclose(self) -> None:
        self.stopping = True
        await self.runtime.aclose()

    async def refuse(self, refuse: bool) -> None:
        """Close (True) or reopen (False) the listening sockets, keeping the ports. The operator listeners
        (management: the control plane) stay open, so a test driving the broker over HTTP can end the fault."""
        self.refusing = refuse
        if refuse:
            await self.runtime.close_listeners(keep=OPERATOR_LISTENERS)
        else:
            await self.runtime.reopen_listeners()

    async def restart(self) -> None:
        """A node restart: listeners close, every connection drops (no wills), the model keeps what is
        durable (:meth:`Broker.restart`), and the listeners reopen on the same ports (unless refusing)."""
        await self.runtime.close_listeners(keep=OPERATOR_LISTENERS)
        await self._drop_clients()
        self.model.restart()
        if not self.refusing:
            await self.runtime.reopen_listeners()

    async def _drop_clients(self) -> None:
        """Drop every client connection as a node going down does (no wills), and the API's channels (what
        basic.get handed out unacknowledged is requeued). The operator's HTTP connections (a control-plane
        request asking for this) stay."""
        self.stopping = True
        try:
            await self.runtime.drop_all(keep=OPERATOR_LISTENERS)
        finally:
            self.stopping = False
        for channel in self.api_channels.values():
            channel.close()
        self.api_channels.clear()
        self.api_owner = ApiOwner()

    async def reset(self) -> None:
        """Empty the broker as if it had just started: every client connection dropped (no wills), every queue,
        exchange, binding, retained message, message fault and log entry gone, vhosts and users as the options
        give them; the operator's connections stay and the clock keeps its time."""
        if self.refusing:
            await self.refuse(False)
        await self._drop_clients()
        # Users and permissions added over HTTP are forgotten.
        self.model.reset(self.options.users, self.options.vhosts)
        for state in self._states.values():
            reset = getattr(state, "reset", None)
            if callable(reset):
                reset()
        if self.journal is not None:
            self.journal.clear()

    @property
    def addresses(self) -> dict[str, Address]:
        return dict(self.runtime.addresses)

    def _on_connect(self, conn: Connection) -> None:
        self.model.emit("connect", conn)

    def _on_disconnect(self, conn: Connection) -> None:
        self.model.emit("disconnect", conn)

    def describe_client(self, conn: Connection) -> dict[str, Any]:
        session = conn.session
        return {
            "id": conn.id,
            "listener": conn.listener,
            "protocol": session.protocol,
            "client_id": session.client_id,
            "user": session.user,
            "peer": conn.peer,
            "connected_at": conn.opened_at,
            "stalled": conn.stalled,
            **session.describe(),
        }
