"""Channels: delivery tags, unacknowledged messages and the consumers of one client connection."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import NotAllowed, PreconditionFailed
from .message import Delivery
from .queue import Consumer, Queue, QueuedMessage

if TYPE_CHECKING:
    from .broker import DeliveryRecord
    from .vhost import VHost

_tags = itertools.count(1)


class Channel:
    """One AMQP-like channel. ``owner`` identifies the connection, for exclusive queues."""

    def __init__(self, vhost: VHost, owner: object, client_id: str | None = None) -> None:
        self.vhost = vhost
        self.owner = owner
        self.client_id = client_id
        self.consumers: dict[str, Consumer] = {}
        self._unacked: dict[int, tuple[QueuedMessage, Queue, Consumer | None, DeliveryRecord | None]] = {}
        self._next_tag = 0
        self.closed = False
        # Told when the broker cancels a consumer because its queue was deleted (the MQTT session reacts).
        self.on_cancel: Callable[[str], None] | None = None

    def next_delivery_tag(self) -> int:
        self._next_tag += 1
        return self._next_tag

    def track(self, tag: int, qm: QueuedMessage, queue: Queue, consumer: Consumer | None,
              record: DeliveryRecord | None = None) -> None:
        self._unacked[tag] = (qm, queue, consumer, record)

    @property
    def unacked_count(self) -> int:
        return len(self._unacked)

    # -- consuming ------------------------------------------------------------------------------
    def consume(
        self,
        queue: str,
        callback: Callable[[Delivery], None],
        *,
        no_ack: bool = False,
        prefetch: int = 0,
        tag: str | None = None,
    ) -> str:
        q = self.vhost.queue_for(queue, self.owner)
        tag = tag or f"amq.ctag-{next(_tags)}"
        if tag in self.consumers:
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'")
        consumer = Consumer(tag, q, self, callback, no_ack, prefetch, client_id=self.client_id)
        self.consumers[tag] = consumer
        q.add_consumer(consumer)
        return tag

    def cancel(self, tag: str) -> None:
        consumer = self.consumers.pop(tag, None)
        if consumer is not None:
            consumer.queue.remove_consumer(consumer)

    def queue_deleted(self, consumer: Consumer) -> None:
        # The consumer's unacked deliveries stay on the channel: RabbitMQ accepts (and ignores) their acks.
        if self.consumers.pop(consumer.tag, None) is not None and self.on_cancel is not None:
            self.on_cancel(consumer.tag)

    def get(self, queue: str, no_ack: bool = True) -> Delivery | None:
        return self.vhost.queue_for(queue, self.owner).get(self, no_ack)

    # -- settling -------------------------------------------------------------------------------
    def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._settle(delivery_tag, multiple, "ack")

    def nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        self._settle(delivery_tag, multiple, "requeue" if requeue else "reject")

    def reject(self, delivery_tag: int, requeue: bool = True) -> None:
        self._settle(delivery_tag, False, "requeue" if requeue else "reject")

    def _settle(self, delivery_tag: int, multiple: bool, outcome: str) -> None:
        # rabbit_channel:collect_acks/3: tag 0 with multiple means every outstanding delivery; otherwise the
        # tag itself must be outstanding, even with multiple.
        if multiple and delivery_tag == 0:
            tags = sorted(self._unacked)
        elif delivery_tag not in self._unacked:
            raise PreconditionFailed(f"unknown delivery tag {delivery_tag}")
        elif multiple:
            tags = sorted(t for t in self._unacked if t <= delivery_tag)
        else:
            tags = [delivery_tag]
        for t in tags:
            qm, queue, consumer, record = self._unacked.pop(t)
            if record is not None:
                record.outcome = outcome
            queue.settle(qm, consumer, outcome)

    def recover(self) -> None:
        """Requeue every unacknowledged message (basic.recover with requeue, or channel close)."""
        pending = sorted(self._unacked.items())
        self._unacked.clear()
        for _, (qm, queue, consumer, record) in pending:
            if record is not None:
                record.outcome = "requeue"
            queue.settle(qm, consumer, "requeue")

    def close(self) -> None:
        """Cancel every consumer and requeue unacknowledged messages, as when a connection goes away."""
        if self.closed:
            return
        self.closed = True
        consumers = list(self.consumers.values())
        self.consumers.clear()
        # Detach first so the requeued messages are not handed straight back to this channel; then
        # requeue, then let auto-delete and x-expires react to the queues having lost their consumers.
        for consumer in consumers:
            consumer.queue.detach_consumer(consumer)
        self.recover()
        for queue in dict.fromkeys(c.queue for c in consumers):
            queue.consumers_changed()
