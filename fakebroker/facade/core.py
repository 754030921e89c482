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
        """The :class:`~fakebroker.Options` this broker runs with.

        Examples:
            >>> broker.options.vhost
            '/'
        """
        return self._node.options

    @property
    def addresses(self) -> dict[str, Address]:
        """Every open listener's :class:`~fakebroker.Address`, by listener name (``mqtt``, ``web_mqtt``, ...).
        Each listener is also an attribute of the handle: ``broker.mqtt``, ``broker.stomp``, ``broker.amqp`` (an
        Address), ``broker.web_mqtt_url``, ``broker.web_stomp_url``, ``broker.amqp_url``, ``broker.http_url``,
        ``broker.management_url`` (a URL).

        Examples:
            >>> broker.addresses["mqtt"] == broker.mqtt
            True
        """
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
        """The MQTT listener's ``(host, port)``; AttributeError when it is off (``mqtt_port=None``).

        Examples:
            >>> host, port = broker.mqtt
            >>> host
            '127.0.0.1'
        """
        return self._listener_attribute("mqtt")  # type: ignore[no-any-return]

    @property
    def web_mqtt_url(self) -> str:
        """The MQTT-over-WebSocket listener's URL, ``ws://host:port/ws`` (WebSocket subprotocol ``mqtt``).

        Examples:
            >>> broker.web_mqtt_url
            'ws://127.0.0.1:.../ws'
        """
        return self._listener_attribute("web_mqtt_url")  # type: ignore[no-any-return]

    @property
    def stomp(self) -> Address:
        """The STOMP listener's ``(host, port)``.

        Examples:
            >>> broker.stomp.host
            '127.0.0.1'
        """
        return self._listener_attribute("stomp")  # type: ignore[no-any-return]

    @property
    def web_stomp_url(self) -> str:
        """The Web STOMP listener's URL, ``ws://host:port/ws`` (subprotocols ``v12.stomp``, ``v11.stomp``, ...).

        Examples:
            >>> broker.web_stomp_url
            'ws://127.0.0.1:.../ws'
        """
        return self._listener_attribute("web_stomp_url")  # type: ignore[no-any-return]

    @property
    def amqp(self) -> Address:
        """The AMQP 0-9-1 listener's ``(host, port)``.

        Examples:
            >>> broker.amqp.host
            '127.0.0.1'
        """
        return self._listener_attribute("amqp")  # type: ignore[no-any-return]

    @property
    def amqp_url(self) -> str:
        """An AMQP URL for the default user and vhost, as pika, kombu and rabbitpy take it.

        Examples:
            >>> broker.amqp_url
            'amqp://guest:guest@127.0.0.1:.../%2F'
        """
        return self._listener_attribute("amqp_url")  # type: ignore[no-any-return]

    @property
    def http_url(self) -> str:
        """The statelessd listener's base URL: ``POST {http_url}/<vhost>/<exchange>/<routing key>``.

        Examples:
            >>> broker.http_url
            'http://127.0.0.1:...'
        """
        return self._listener_attribute("http_url")  # type: ignore[no-any-return]

    @property
    def management_url(self) -> str:
        """The management listener's base URL: RabbitMQ's management API under ``/api/``, the control plane
        under ``/api/fakebroker/`` and the live page at ``/``.

        Examples:
            >>> broker.management_url
            'http://127.0.0.1:...'
        """
        return self._listener_attribute("management_url")  # type: ignore[no-any-return]

    def listener_urls(self) -> dict[str, str]:
        """Every open listener, by name, as the text a client is given: ``host:port`` or a URL.

        Examples:
            >>> broker.listener_urls()["web_mqtt"] == broker.web_mqtt_url
            True
        """
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

        Examples:
            >>> keys = []
            >>> remove = broker.on("route", lambda entry: keys.append(entry.routing_key))
            >>> _ = broker.publish("amq.topic", "sensors.temp", b"21.5")
            >>> keys
            ['sensors.temp']
            >>> remove()
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
    journal = node.journal = Journal(node)
    journal.attach()  # before the listeners open: the journal sees every connection
    async with anyio.create_task_group() as tg:
        await node.start(tg, sockets)
        try:
            yield node, journal
        finally:
            with anyio.CancelScope(shield=True):
                await node.aclose()
            tg.cancel_scope.cancel()


