"""The handle's core: the node it drives, one dispatcher onto the node's loop, listener addresses, events,
and the node runner both faces use."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.from_thread

from ..config import Options
from ..node import Node
from ..observe import (
    Journal,
)
from ..protocols import listener_specs
from ..server.runtime import Address

T = TypeVar("T")


class BrokerCore:
    """What every part of the handle builds on: the node, the dispatcher to its loop, addresses, events."""

    _node: Node

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        raise NotImplementedError

    # addresses
    @property
    def options(self) -> Options:
        return self._node.options

    @property
    def addresses(self) -> dict[str, Address]:
        return self._node.addresses

    def _address(self, name: str) -> Address:
        try:
            return self._node.addresses[name]
        except KeyError:
            raise AttributeError(f"the {name} listener is not enabled on this broker") from None

    def _listener_attribute(self, name: str) -> Any:
        """A listener's handle attribute (``mqtt``, ``web_mqtt_url``, ...) as its protocol's spec names it."""
        for spec in listener_specs():
            if spec.attribute == name:
                address = self._address(spec.name)
                return address if spec.url is None else spec.url.format(host=address.host, port=address.port)
            if name in spec.more_urls:
                address = self._address(spec.name)
                return spec.more_urls[name].format(host=address.host, port=address.port)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._listener_attribute(name)

    @property
    def mqtt(self) -> Address:
        """The MQTT listener's ``(host, port)``."""
        return self._listener_attribute("mqtt")  # type: ignore[no-any-return]

    @property
    def web_mqtt_url(self) -> str:
        """MQTT over WebSocket: ``ws://host:port/ws``."""
        return self._listener_attribute("web_mqtt_url")  # type: ignore[no-any-return]

    def listener_urls(self) -> dict[str, str]:
        """Every open listener, by name, as its address or URL text."""
        specs = {spec.name: spec for spec in listener_specs()}
        return {name: specs[name].address_text(a.host, a.port) for name, a in self.addresses.items()}

    # model operations
    def _vhost(self, vhost: str | None) -> str:
        return self._node.options.vhost if vhost is None else vhost


    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call ``callback`` for each broker event; returns a function that removes it.

        Callbacks run on the broker's event loop: for :func:`start`, the broker's own thread (so guard shared
        state, and never call a blocking broker method from one); for :func:`serve`, the caller's loop. They
        must not block. An exception in a callback does not reach the broker: it is kept in
        :attr:`callback_errors` (the pytest fixtures fail the test with it). Events and their arguments:

        - ``publish(entry)``: a message was accepted (a :class:`LoggedMessage`, not routed yet)
        - ``route(entry)``: it was routed (``entry.queues``), or dropped by a message fault (``entry.fault``)
        - ``deliver(entry, queue, client_id)``: handed to a consumer or to ``get`` (``entry`` may be None
          when the log has been trimmed)
        - ``connect(conn)`` / ``disconnect(conn)``: a connection opened / closed (``conn.id``,
          ``conn.protocol``, ``conn.client_id`` (None until the client identified itself), ``conn.peer``)
        - ``client(session)``: a connection's client identified itself or changed its subscriptions
          (``session.client_id``, ``session.describe()``)
        - ``queue_deleted(vhost, queue)``; ``dropped(vhost, queue, message, reason)``: a queue discarded a
          message (``expired``, ``maxlen``, ``rejected``; dead-lettered when the queue has a DLX)
        """

        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as exc:  # a test's callback must not break the broker; it is reported instead
                self.callback_errors.append(exc)

        remove = self._call(self._node.model.on, event, guarded)
        # The remover edits the model's listener lists: on the loop too (directly once the broker stopped).
        return lambda: self._read(remove)

    # inspection
    def _setup(self, node: Node, journal: Journal) -> None:
        self._node = node
        self._journal = journal
        #: Exceptions raised by :meth:`on` callbacks, oldest first.
        self.callback_errors: list[Exception] = []

    def _read(self, fn: Callable[[], T]) -> T:
        """Run a read-only ``fn`` on the loop (or directly once the broker has stopped)."""
        return self._call(fn)


@asynccontextmanager
async def _run_node(options: Options,
                    sockets: dict[str, socket.socket] | None = None) -> AsyncIterator[tuple[Node, Journal]]:
    node = Node(options)
    node.thread_id = threading.get_ident()
    journal = Journal(node)
    journal.attach()  # before the listeners open: the journal sees every connection
    async with anyio.create_task_group() as tg:
        await node.start(tg, sockets)
        try:
            yield node, journal
        finally:
            with anyio.CancelScope(shield=True):
                await node.aclose()
            tg.cancel_scope.cancel()


