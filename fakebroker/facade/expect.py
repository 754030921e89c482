"""Expectations: assertions on the message log, event-driven waits, and the traffic report."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.from_thread

from ..model import LoggedMessage
from ..observe import (
    MessageTimeout,
    check_criteria,
    explain,
    format_criteria,
    listing,
    matches,
    traffic_report,
)
from .core import BrokerCore
from .views import ClientInfo, ClientList, MessageLog, client_list


class Expectations(BrokerCore):
    """``assert_*`` and the waits, with near-miss reports."""

    def traffic_report(self, messages: int = 50) -> str:
        """Recent traffic as text: connections opened and closed (with client ids and subscriptions), injected
        faults, connected clients (subscriptions, wills), queues and bindings, and the last ``messages``
        messages with where they were routed and who received them. Also works after the broker stopped.

        Examples:
            >>> _ = broker.publish("amq.topic", "sensors.temp", b"21.5")
            >>> print(broker.traffic_report(messages=1))
            broker ...; clock t=0.000 (VirtualClock)
            ...
            messages (1):
              #1 t=0.000 api -> exchange='amq.topic' routing_key='sensors.temp' body=b'21.5' -> unroutable
        """
        return self._read(lambda: traffic_report(self._node, self._journal, messages))

    def _assert_count(self, what: str, count: int | None, criteria: dict[str, Any]) -> MessageLog:
        __tracebackhide__ = True
        check_criteria(criteria)
        if count is not None and count < 0:
            raise ValueError("count must be >= 0")

        def run() -> tuple[MessageLog, str | None]:
            log = list(self._node.model.log)
            found = [m for m in log if matches(m, criteria)]
            if (count is None and found) or len(found) == count:
                return MessageLog(found), None
            wanted = f"a message {what}" if count is None else f"{count} message(s) {what}"
            headline = f"expected {wanted} matching {format_criteria(criteria)}, found {len(found)}"
            if found:
                headline += ":\n" + listing(found)
            if count is not None and len(found) > count:
                return MessageLog(found), headline
            return MessageLog(found), explain(headline, log, criteria)

        found, error = self._read(run)
        if error is not None:
            raise AssertionError(error)
        return found

    def assert_published(self, count: int | None = None, **criteria: Any) -> MessageLog:
        """Assert that a message matching ``criteria`` was published (exactly ``count`` of them if given).

        Counts every message the broker accepted, including unroutable, dropped and still-delayed ones. Returns
        the matches; on failure the AssertionError lists them, or the near misses and how each one differs.
        It checks what already happened: wait first (:meth:`wait_for_message`) for something still on its way.
        The criteria are those of :func:`~fakebroker.facade.message_matches` (``topic``, ``routing_key``,
        ``payload``, ``client_id``, ``headers``, ...).

        Examples:
            >>> _ = broker.publish("amq.topic", "sensors.temp", b"21.5")
            >>> broker.assert_published(1, topic="sensors/+", payload=b"21.5").bodies
            [b'21.5']
        """
        __tracebackhide__ = True
        return self._assert_count("published", count, criteria)

    def assert_not_published(self, **criteria: Any) -> None:
        """Assert that no message matching ``criteria`` was published; the error lists the ones that were.

        Examples:
            >>> _ = broker.publish("amq.topic", "alerts.fire", b"!")
            >>> broker.assert_not_published(topic="alerts/#")
            Traceback (most recent call last):
              ...
            AssertionError: expected 0 message(s) published matching topic='alerts/#', found 1:
            ...
        """
        __tracebackhide__ = True
        self._assert_count("published", 0, criteria)

    def assert_delivered(self, client_id: str, count: int | None = None, **criteria: Any) -> MessageLog:
        """Assert that a message matching ``criteria`` was delivered to ``client_id`` (``count`` of them if
        given): handed to one of its subscriptions or consumers, not necessarily acknowledged yet.

        Examples:
            >>> device = MqttClient(broker.mqtt, "device-1")
            >>> device.connect()
            (False, 0)
            >>> device.subscribe("commands/#", qos=1)
            [1]
            >>> _ = broker.publish("amq.topic", "commands.reboot", b"now")
            >>> device.get().payload
            b'now'
            >>> broker.assert_delivered("device-1", topic="commands/reboot").bodies
            [b'now']
        """
        __tracebackhide__ = True
        return self._assert_count(f"delivered to {client_id!r}", count, {**criteria, "delivered_to": client_id})

    async def _wait(self, count: int, timeout: float, criteria: dict[str, Any]) -> MessageLog:
        """On the loop: wait, driven by the route and deliver hooks, for ``count`` matching log entries."""
        __tracebackhide__ = True
        check_criteria(criteria)
        if count < 1:
            raise ValueError("count must be at least 1")
        model = self._node.model
        found: dict[int, LoggedMessage] = {}
        errors: list[Exception] = []
        done = anyio.Event()

        def consider(entry: LoggedMessage | None, *_: Any) -> None:
            if entry is None or entry.pending or entry.seq in found:
                return
            try:
                matched = matches(entry, criteria)
            except Exception as exc:
                # A predicate in the criteria raised. From a hook it would surface in whoever published (an
                # MQTT client's connection would close for it): end the wait and raise it to the waiter.
                errors.append(exc)
                done.set()
                return
            if not matched:
                return
            found[entry.seq] = entry
            if len(found) >= count:
                done.set()

        for entry in model.log:
            consider(entry)
        if len(found) < count:
            removers = [model.on("route", consider), model.on("deliver", consider)]
            try:
                with anyio.move_on_after(timeout):
                    await done.wait()
                if not done.is_set():
                    await self._node.runtime.settle(0.5)  # the final check sees what already reached the broker
            finally:
                for remove in removers:
                    remove()
        if errors:
            raise errors[0]
        matched = sorted(found.values(), key=lambda m: m.seq)
        if len(matched) < count:
            what = "a message" if count == 1 else f"{count} messages"
            headline = (f"timed out after {timeout} s waiting for {what} matching {format_criteria(criteria)}"
                        f"; {len(matched)} matched")
            if matched:
                headline += ":\n" + listing(matched)
            raise MessageTimeout(explain(headline, model.log, criteria))
        # With delivered_to, the bytes are on their way: let them reach the client's socket first.
        await self._node.runtime.flush()
        return MessageLog(matched)


    # -- connection state --------------------------------------------------------------------------------------
    async def _wait_client(self, client_id: str, present: bool, subscribed: str | None,
                           timeout: float) -> ClientInfo | None:
        """On the loop: wait, driven by connection events, until ``client_id`` is connected (and subscribed to
        ``subscribed``), or until it is gone (``present=False``)."""
        __tracebackhide__ = True
        changed = anyio.Event()

        def poke(*_: Any) -> None:
            changed.set()

        def state() -> tuple[bool, ClientInfo | None, ClientList]:
            clients = client_list(self._node)
            mine = [c for c in clients if c.client_id == client_id]
            if not present:
                return not mine, None, clients
            for c in mine:
                if subscribed is None or subscribed in c.subscriptions:
                    return True, c, clients
            return False, None, clients

        model = self._node.model
        removers = [model.on(event, poke) for event in ("connect", "disconnect", "client")]
        try:
            with anyio.move_on_after(timeout):
                while True:
                    ok, found, _ = state()
                    if ok:
                        return found
                    await changed.wait()
                    changed = anyio.Event()
            await self._node.runtime.settle(0.5)  # the final check sees what already reached the broker
            ok, found, clients = state()
            if ok:
                return found
        finally:
            for remove in removers:
                remove()
        if present:
            wanted = f"client {client_id!r} to connect" + (f" and subscribe to {subscribed!r}" if subscribed else "")
        else:
            wanted = f"client {client_id!r} to disconnect"
        lines = [f"timed out after {timeout} s waiting for {wanted}", "Connected clients:"]
        lines += [f"  conn#{c.id} {c.protocol} client_id={c.client_id!r} subscriptions={c.subscriptions}"
                  + ("  <- this client" if c.client_id == client_id else "") for c in clients] or ["  (none)"]
        raise MessageTimeout("\n".join(lines))
