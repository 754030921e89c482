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
        """queue.declare with AMQP's defaults; returns the name (generated ``amq.gen-…`` for ``""``).

        ``arguments`` are the ``x-`` arguments (``x-message-ttl``, ``x-max-length``, ``x-dead-letter-exchange``,
        ...); ``passive`` only checks that the queue exists (NotFound otherwise). Redeclaring with other
        properties raises PreconditionFailed, as RabbitMQ does. ``vhost`` defaults to the broker's.

        Examples:
            >>> broker.declare_queue("orders", durable=True, arguments={"x-max-length": 100})
            'orders'
        """

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
        """exchange.declare: ``type`` is ``direct``, ``fanout``, ``topic`` or ``headers``; the flags and
        errors are as for :meth:`declare_queue`.

        Examples:
            >>> broker.declare_exchange("events", "fanout", durable=True)
            >>> broker.exchanges["events"].type
            'fanout'
        """

        def run() -> None:
            self._node.model.vhost(self._vhost(vhost)).declare_exchange(
                name, type, durable=durable, auto_delete=auto_delete, internal=internal, arguments=arguments,
                passive=passive)

        self._call(run)

    def bind(self, queue: str, exchange: str, routing_key: str = "", arguments: dict[str, Any] | None = None,
             *, vhost: str | None = None) -> None:
        """queue.bind: route messages of ``exchange`` that match ``routing_key`` (a topic pattern on a topic
        exchange; ``arguments`` for a headers exchange) to ``queue``. MQTT topics arrive on ``amq.topic`` with
        ``/`` turned into ``.``.

        Examples:
            >>> broker.declare_queue("audit")
            'audit'
            >>> broker.bind("audit", "amq.topic", "sensors.#")
            >>> broker.publish("amq.topic", "sensors.temp", b"21.5").queues
            ('audit',)
        """
        self._call(lambda: self._node.model.vhost(self._vhost(vhost)).bind(
            queue, exchange, routing_key, arguments, owner=self._node.api_owner))

    def unbind(self, queue: str, exchange: str, routing_key: str = "", arguments: dict[str, Any] | None = None,
               *, vhost: str | None = None) -> None:
        """queue.unbind: remove the binding :meth:`bind` made with the same arguments.

        Examples:
            >>> broker.declare_queue("audit")
            'audit'
            >>> broker.bind("audit", "amq.topic", "sensors.#")
            >>> broker.unbind("audit", "amq.topic", "sensors.#")
            >>> broker.publish("amq.topic", "sensors.temp", b"21.5").queues
            ()
        """
        self._call(lambda: self._node.model.vhost(self._vhost(vhost)).unbind(
            queue, exchange, routing_key, arguments, owner=self._node.api_owner))

    def delete_queue(self, name: str, *, if_unused: bool = False, if_empty: bool = False,
                     vhost: str | None = None) -> int:
        """queue.delete; returns how many messages were in it. With ``if_unused`` / ``if_empty`` a queue that has
        consumers / messages is kept and PreconditionFailed raised.

        Examples:
            >>> broker.declare_queue("jobs")
            'jobs'
            >>> _ = broker.publish("", "jobs", b"job 1")
            >>> broker.delete_queue("jobs")
            1
        """
        return self._call(lambda: self._node.model.vhost(self._vhost(vhost)).delete_queue(
            name, if_unused, if_empty))

    def delete_exchange(self, name: str, *, if_unused: bool = False, vhost: str | None = None) -> None:
        """exchange.delete, with its bindings; with ``if_unused`` an exchange that still has bindings is kept and
        PreconditionFailed raised.

        Examples:
            >>> broker.declare_exchange("events", "fanout")
            >>> broker.delete_exchange("events")
            >>> "events" in broker.exchanges
            False
        """
        self._call(lambda: self._node.model.vhost(self._vhost(vhost)).delete_exchange(name, if_unused))

    def purge(self, queue: str, *, vhost: str | None = None) -> int:
        """queue.purge: drop the queue's ready messages (unacknowledged ones stay); returns how many.

        Examples:
            >>> broker.declare_queue("jobs")
            'jobs'
            >>> _ = broker.publish("", "jobs", b"job 1")
            >>> broker.purge("jobs")
            1
        """
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
        """basic.publish from the Python API; returns the message log entry (``.queues`` says where it went).

        ``body`` is bytes (str is UTF-8 encoded); ``properties`` are AMQP basic properties (``headers``,
        ``delivery_mode``, ``expiration``, ``content_type``, ...). An MQTT subscriber of topic ``a/b`` receives
        a message published to ``amq.topic`` with routing key ``a.b``.

        Examples:
            >>> broker.declare_queue("jobs")
            'jobs'
            >>> entry = broker.publish("", "jobs", b"job 1", {"delivery_mode": 2})
            >>> entry.queues
            ('jobs',)
        """
        data = body.encode() if isinstance(body, str) else bytes(body)
        props = check_properties(properties)
        return self._call(lambda: self._node.model.publish(
            exchange, routing_key, data, props, vhost=self._vhost(vhost), protocol="api"))

    def get(self, queue: str, *, auto_ack: bool = True, vhost: str | None = None) -> Delivery | None:
        """basic.get: the head message (removed when ``auto_ack``), or None when the queue is empty.

        With ``auto_ack=False`` the message stays unacknowledged until :meth:`ack` or :meth:`nack`.

        Examples:
            >>> broker.declare_queue("jobs")
            'jobs'
            >>> _ = broker.publish("", "jobs", b"job 1")
            >>> broker.get("jobs").body
            b'job 1'
            >>> broker.get("jobs") is None
            True
        """
        return self._call(lambda: self._node.api_channel(self._vhost(vhost)).get(queue, no_ack=auto_ack))

    def ack(self, delivery: Delivery, *, vhost: str | None = None) -> None:
        """basic.ack of a delivery :meth:`get` returned with ``auto_ack=False``: the message leaves the queue.

        Examples:
            >>> broker.declare_queue("jobs")
            'jobs'
            >>> _ = broker.publish("", "jobs", b"job 1")
            >>> delivery = broker.get("jobs", auto_ack=False)
            >>> broker.ack(delivery)
            >>> broker.queues["jobs"].messages, broker.queues["jobs"].unacked
            (0, 0)
        """
        self._call(lambda: self._node.api_channel(self._vhost(vhost)).ack(delivery.delivery_tag))

    def nack(self, delivery: Delivery, *, requeue: bool = True, vhost: str | None = None) -> None:
        """basic.nack of a delivery :meth:`get` returned with ``auto_ack=False``: back to the head of its queue
        (marked redelivered), or with ``requeue=False`` dropped (dead-lettered when the queue has a DLX).

        Examples:
            >>> broker.declare_queue("jobs")
            'jobs'
            >>> _ = broker.publish("", "jobs", b"job 1")
            >>> broker.nack(broker.get("jobs", auto_ack=False))
            >>> broker.get("jobs").redelivered
            True
        """
        self._call(lambda: self._node.api_channel(self._vhost(vhost)).nack(delivery.delivery_tag,
                                                                             requeue=requeue))

