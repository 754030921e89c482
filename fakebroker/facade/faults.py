"""Faults a test injects: stalled and dropped connections, dropped and delayed messages, restarts."""

from __future__ import annotations

from typing import Any

from ..clock import VirtualClock
from ..model.broker import FaultAction
from ..observe import MessageFault
from ..server.runtime import Connection
from .core import BrokerCore
from .views import ClientInfo

#: How a fault names a connection: a client id (MQTT), a connection id, or an entry of ``broker.clients``.
Target = str | int | ClientInfo


class Faults(BrokerCore):
    """Faults addressed by client id, by connection id, or by a :class:`ClientInfo` from ``broker.clients``."""

    def _connections(self, target: Target) -> list[Connection]:
        runtime = self._node.runtime
        if isinstance(target, ClientInfo):
            target = target.id
        if isinstance(target, str):
            conns = runtime.find(target)
        elif isinstance(target, int) and not isinstance(target, bool):
            conn = runtime.connections.get(target)
            conns = [conn] if conn is not None else []
        else:
            raise TypeError(f"name a connection by client id, connection id or ClientInfo, not {target!r}")
        if not conns:
            known = [(c.id, c.protocol, c.client_id) for c in runtime.connections.values()]
            raise LookupError(f"no connected client {target!r}; connected (id, protocol, client id): {known}")
        return conns

    def stall(self, client_id: Target) -> None:
        """Stop reading from and writing to the client's connection, as for a frozen peer or a dead network path.

        Its bytes wait in the socket buffers, PINGREQs included, so its keepalive runs out once the clock
        passes 1.5 x keepalive after its last packet read; :meth:`resume` lets the held bytes through.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1", keepalive=60)
            >>> device.connect()
            (False, 0)
            >>> broker.stall("device-1")
            >>> broker.clock.advance(90)  # no packet read for 1.5 x keepalive: the broker closes it
            >>> broker.wait_for_disconnect("device-1")
        """

        def run() -> None:
            for conn in self._connections(client_id):
                self._node.runtime.stall(conn)
            self._journal.note(f"fault: stall({client_id!r})")

        self._call(run)

    def resume(self, client_id: Target) -> None:
        """Undo :meth:`stall`: held bytes are read and written again.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> broker.stall("device-1")
            >>> device.publish("status/device-1", b"online")  # QoS 0: written, and held by the broker
            >>> broker.assert_not_published(topic="status/#")
            >>> broker.resume("device-1")
            >>> broker.wait_for_message(topic="status/device-1").body
            b'online'
        """

        def run() -> None:
            for conn in self._connections(client_id):
                self._node.runtime.resume(conn)
            self._journal.note(f"fault: resume({client_id!r})")

        self._call(run)

    def block(self, client_id: Target | None = None, reason: str = "low on memory") -> None:
        """A resource alarm as AMQP clients see it, on one connection or, with no ``client_id``, on the whole
        node (every AMQP connection, those opened while it lasts included), as RabbitMQ 3.10 applies a memory or
        disk alarm: nothing is sent at once; a connection that publishes is sent ``connection.blocked`` with
        ``reason`` (if it announced the capability, as pika, aio-pika and py-amqp do) and nothing more is read
        from it, that publish included, until :meth:`unblock`. Connections that do not publish carry on.

        Examples:
            >>> import pika
            >>> conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
            >>> reasons = []
            >>> conn.add_on_connection_blocked_callback(lambda _, frame: reasons.append(frame.method.reason))
            >>> broker.block()
            >>> conn.channel().basic_publish("", "jobs", b"waits")
            >>> while not reasons:
            ...     conn.process_data_events(time_limit=0.05)
            >>> reasons
            ['low on memory']
            >>> broker.unblock()
            >>> conn.close()
        """

        self._alarm(client_id, reason, f"fault: block({client_id!r}, {reason!r})")

    def unblock(self, client_id: Target | None = None) -> None:
        """The alarm clears (on the connection, or with no ``client_id`` on the node): ``connection.unblocked``
        to each connection that was told it was blocked, and what it sent since is read.

        Examples:
            >>> import pika
            >>> conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
            >>> events = []
            >>> conn.add_on_connection_blocked_callback(lambda *_: events.append("blocked"))
            >>> conn.add_on_connection_unblocked_callback(lambda *_: events.append("unblocked"))
            >>> broker.block(broker.clients[0])
            >>> conn.channel().basic_publish("", "jobs", b"waits")
            >>> while not events:
            ...     conn.process_data_events(time_limit=0.05)
            >>> broker.unblock(broker.clients[0])
            >>> while len(events) < 2:
            ...     conn.process_data_events(time_limit=0.05)
            >>> events
            ['blocked', 'unblocked']
            >>> conn.close()
        """

        self._alarm(client_id, None, f"fault: unblock({client_id!r})")

    def _alarm(self, client_id: Target | None, reason: str | None, note: str) -> None:
        """Raise (``reason``) or clear (None) a resource alarm on the node (no ``client_id``) or on the
        connections of ``client_id``."""

        def run() -> None:
            if client_id is None:
                from ..protocols.amqp.session import ResourceAlarm

                self._node.state(ResourceAlarm).reason = reason
                sessions = self._amqp_sessions()
            else:
                sessions = [self._amqp_session(conn) for conn in self._connections(client_id)]
            for session in sessions:
                if reason is None:
                    session.unblock()
                else:
                    session.block(reason)
            self._journal.note(note)

        self._call(run)

    def _amqp_sessions(self) -> list[Any]:
        return [conn.session for conn in self._node.runtime.connections.values() if hasattr(conn.session, "block")]

    @staticmethod
    def _amqp_session(conn: Connection) -> Any:
        session = conn.session
        if not hasattr(session, "block"):
            raise TypeError(f"connection {conn.id} speaks {session.protocol}: only AMQP 0-9-1 connections can be "
                            "blocked")
        return session

    def drop_next(self, n: int = 1, **criteria: Any) -> MessageFault:
        """Drop the next ``n`` published messages matching ``criteria`` (checked before routing: ``topic``,
        ``routing_key``, ``exchange``, ``protocol``, ``client_id``, ``vhost``, ``payload``, ``headers``).

        A dropped message is logged with ``fault="dropped"`` and reaches no queue; its publisher still got its
        acknowledgement and a retained message is still stored, as for a message lost inside the broker.
        The returned :class:`~fakebroker.MessageFault` has ``remaining``, ``matched`` and ``cancel()``.

        Examples:
            >>> fault = broker.drop_next(topic="sensors/#")
            >>> broker.publish("amq.topic", "sensors.temp", b"21.5").fault
            'dropped'
            >>> fault.remaining
            0
        """
        return self._add_fault("drop", n, criteria)

    def delay_next(self, n: int, seconds: float, **criteria: Any) -> MessageFault:
        """Hold the next ``n`` matching messages for ``seconds`` on the broker's clock, then route them with
        the bindings of that moment (``fault="delayed"``; ``pending`` until then). With the virtual clock they
        are routed by ``clock.advance``.

        Examples:
            >>> broker.declare_queue("jobs")
            'jobs'
            >>> _ = broker.delay_next(1, 5.0, routing_key="jobs")
            >>> _ = broker.publish("", "jobs", b"late")
            >>> broker.queues["jobs"].messages
            0
            >>> broker.clock.advance(5)
            >>> broker.queues["jobs"].messages
            1
        """
        if seconds < 0:
            raise ValueError("the delay cannot be negative")
        return self._add_fault(float(seconds), n, criteria)

    def _add_fault(self, action: FaultAction, n: int, criteria: dict[str, Any]) -> MessageFault:
        fault = MessageFault(self._node, action, n, criteria, lambda fn: self._call(fn), self.callback_errors)

        def run() -> None:
            self._node.model.publish_hooks.append(fault)
            self._journal.note(f"fault: {fault!r}")

        self._call(run)
        return fault

    async def _advance(self, seconds: float) -> None:
        """On the loop: fire the timers due within ``seconds``, then wait until their bytes are written."""
        clock = self._node.clock
        if not isinstance(clock, VirtualClock):
            raise TypeError("only a virtual clock can be advanced; this broker runs on the wall clock")
        # What clients sent before the test moved time is applied first (a DISCONNECT still in the socket
        # buffer must not lose the race against the timers it would have cancelled).
        await self._node.runtime.settle()
        clock.advance(seconds)
        await self._node.runtime.flush()

    async def _disconnect(self, target: Target, how: str = "") -> None:
        """Drop the connection(s) with no protocol goodbye, once what they sent is read; return once closed."""
        connections = self._connections(target)
        await self._node.runtime.settle()
        self._journal.note(f"fault: disconnect({target!r}){how}")
        for conn in connections:
            await self._node.runtime.disconnect(conn)

    @property
    def refusing(self) -> bool:
        """True inside :meth:`refuse_connections`.

        Examples:
            >>> broker.refusing
            False
        """
        return self._node.refusing

    async def _reset(self, how: str = "") -> None:
        await self._node.runtime.settle()
        await self._node.reset()
        self._journal.note(f"fault: reset{how}")

    async def _restart(self) -> None:
        await self._node.runtime.settle()
        self._journal.note("fault: restart")
        await self._node.restart()

    async def _refuse(self, refuse: bool) -> None:
        if refuse and self._node.refusing:
            raise RuntimeError("this broker is already refusing connections")
        self._journal.note(f"fault: {'refusing' if refuse else 'accepting'} connections")
        await self._node.refuse(refuse)


