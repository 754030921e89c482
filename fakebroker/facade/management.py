"""Management operations from the test: declare, bind, publish, get, ack (AMQP semantics and errors)."""

from __future__ import annotations

from typing import Any

from ..model import Delivery, LoggedMessage
from ..model.message import check_properties
from .core import BrokerCore


class Management(BrokerCore):
    """AMQP 0-9-1 operations, as a client on the broker's own channel would do them."""

    def declare_queue(
        self,
        name: str = "",
        *,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        passive: bool = False,
        vhost: str | None = None,
    ) -> str:
        """queue.declare with AMQP's defaults; returns the name (generated ``amq.gen-…`` for ``""``)."""

        def run() -> str:
            vh = self._node.model.vhost(self._vhost(vhost))
            return vh.declare_queue(name, durable=durable, exclusive=exclusive, auto_delete=auto_delete,
                                    arguments=arguments, passive=passive, owner=self._node.api_owner).name

        return self._call(run)

    def declare_exchange(
        self,
        name: str,
        type: str = "direct",
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
        passive: bool = False,
        vhost: str | None = None,
    ) -> None:
        def run() -> None:
            self._node.model.vhost(self._vhost(vhost)).declare_exchange(
                name, type, durable=durable, auto_delete=auto_delete, internal=internal, arguments=arguments,
                passive=passive)

        self._call(run)

    def bind(self, queue: str, exchange: str, routing_key: str = "", arguments: dict[str, Any] | None = None,
             *, vhost: str | None = None) -> None:
        self._call(lambda: self._node.model.vhost(self._vhost(vhost)).bind(
            queue, exchange, routing_key, arguments, owner=self._node.api_owner))

    def unbind(self, queue: str, exchange: str, routing_key: str = "", arguments: dict[str, Any] | None = None,
               *, vhost: str | None = None) -> None:
        self._call(lambda: self._node.model.vhost(self._vhost(vhost)).unbind(
            queue, exchange, routing_key, arguments, owner=self._node.api_owner))

    def delete_queue(self, name: str, *, if_unused: bool = False, if_empty: bool = False,
                     vhost: str | None = None) -> int:
        """queue.delete; returns how many messages were in it."""
        return self._call(lambda: self._node.model.vhost(self._vhost(vhost)).delete_queue(
            name, if_unused, if_empty))

    def delete_exchange(self, name: str, *, if_unused: bool = False, vhost: str | None = None) -> None:
        self._call(lambda: self._node.model.vhost(self._vhost(vhost)).delete_exchange(name, if_unused))

    def purge(self, queue: str, *, vhost: str | None = None) -> int:
        return self._call(lambda: self._node.model.vhost(self._vhost(vhost)).purge_queue(queue))

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str = b"",
        properties: dict[str, Any] | None = None,
        *,
        vhost: str | None = None,
    ) -> LoggedMessage:
        """basic.publish from the Python API; returns the message log entry (``.queues`` says where it went)."""
        data = body.encode() if isinstance(body, str) else bytes(body)
        props = check_properties(properties)
        return self._call(lambda: self._node.model.publish(
            exchange, routing_key, data, props, vhost=self._vhost(vhost), protocol="api"))

    def get(self, queue: str, *, auto_ack: bool = True, vhost: str | None = None) -> Delivery | None:
        """basic.get: the head message (removed when ``auto_ack``), or None when the queue is empty."""
        return self._call(lambda: self._node.api_channel(self._vhost(vhost)).get(queue, no_ack=auto_ack))

    def ack(self, delivery: Delivery, *, vhost: str | None = None) -> None:
        self._call(lambda: self._node.api_channel(self._vhost(vhost)).ack(delivery.delivery_tag))

    def nack(self, delivery: Delivery, *, requeue: bool = True, vhost: str | None = None) -> None:
        self._call(lambda: self._node.api_channel(self._vhost(vhost)).nack(delivery.delivery_tag,
                                                                             requeue=requeue))

