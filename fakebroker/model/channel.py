"""Channels: delivery tags, unacknowledged messages and the consumers of one client connection."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import AccessRefused, NotAllowed, PreconditionFailed
from .message import Delivery
from .queue import Consumer, Queue, QueuedMessage

if TYPE_CHECKING:
    from .broker import DeliveryRecord
    from .vhost import VHost

_tags = itertools.count(1)
#: An outstanding delivery: its tag, the message, its queue, and the consumer it went to (None: basic.get).
Unacked = tuple[int, QueuedMessage, Queue, "Consumer | None", "DeliveryRecord | None"]


class Channel:
    """One AMQP-like channel. ``owner`` identifies the connection, for exclusive queues."""

    # One per AMQP channel and per subscribing MQTT connection: slots keep it small.
    __slots__ = ("_next_tag", "_unacked", "client_id", "closed", "consumer_unacked", "consumers", "flow",
                 "global_prefetch", "on_cancel", "owner", "vhost")

    def __init__(self, vhost: VHost, owner: object, client_id: str | None = None) -> None:
        self.vhost = vhost
        self.owner = owner
        self.client_id = client_id
        self.consumers: dict[str, Consumer] = {}
        self._unacked: dict[int, tuple[QueuedMessage, Queue, Consumer | None, DeliveryRecord | None]] = {}
        self._next_tag = 0
        self.closed = False
        #: basic.qos with global=true: unacknowledged consumer deliveries the whole channel may hold (0: no limit).
        self.global_prefetch = 0
        self.consumer_unacked = 0
        # Told when the broker cancels a consumer because its queue was deleted (the MQTT session reacts).
        self.on_cancel: Callable[[str], None] | None = None
        #: Whether the channel's owner can take deliveries now; False (its client stopped reading) holds every
        #: consumer of the channel, no-ack ones included, as RabbitMQ's credit flow does. After it turns True
        #: again, :meth:`wake_consumers` resumes them. None: always.
        self.flow: Callable[[], bool] | None = None

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
        exclusive: bool = False,
        priority: int = 0,
    ) -> str:
        q = self.vhost.queue_for(queue, self.owner)
        tag = tag or f"amq.ctag-{next(_tags)}"
        if tag in self.consumers:
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'")
        # rabbit_queue_consumers: an exclusive consumer needs the queue to itself, and keeps it.
        if q.exclusive_consumer is not None or (exclusive and q.consumers):
            raise AccessRefused(f"queue '{q.name}' in vhost '{self.vhost.name}' in exclusive use")
        consumer = Consumer(tag, q, self, callback, no_ack, prefetch, client_id=self.client_id, priority=priority)
        self.consumers[tag] = consumer
        if exclusive:
            q.exclusive_consumer = consumer
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
        if multiple:
            self._settle(delivery_tag, multiple, "ack")
            return
        # One tag, as every MQTT PUBACK and most AMQP acks: settled without the lists of take().
        entry = self._unacked.pop(delivery_tag, None)
        if entry is None:
            raise PreconditionFailed(f"unknown delivery tag {delivery_tag}")
        qm, queue, consumer, record = entry
        if record is not None:
            record.outcome = "ack"
        queue.settle(qm, consumer, "ack")
        if self.global_prefetch:
            self.wake_consumers()

    def nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        self._settle(delivery_tag, multiple, "requeue" if requeue else "reject")

    def reject(self, delivery_tag: int, requeue: bool = True) -> None:
        self._settle(delivery_tag, False, "requeue" if requeue else "reject")

    def _settle(self, delivery_tag: int, multiple: bool, outcome: str) -> None:
        self.settle_taken(self.take(delivery_tag, multiple), outcome)

    def take(self, delivery_tag: int, multiple: bool) -> list[Unacked]:
        """Remove the deliveries an ack, nack or reject names from the outstanding ones, without settling them
        (a transaction settles them at commit, or puts them back with :meth:`restore` at rollback)."""
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
        return [(t, *self._unacked.pop(t)) for t in tags]

    def settle_taken(self, taken: list[Unacked], outcome: str) -> None:
        for _, qm, queue, consumer, record in taken:
            if record is not None:
                record.outcome = outcome
            queue.settle(qm, consumer, outcome)
        if self.global_prefetch:
            self.wake_consumers()

    def restore(self, taken: list[Unacked]) -> None:
        """Make taken deliveries outstanding again (tx.rollback)."""
        for tag, qm, queue, consumer, record in taken:
            self._unacked[tag] = (qm, queue, consumer, record)

    def wake_consumers(self) -> None:
        """Put consumers blocked by the channel's shared window back in rotation once it has room."""
        for consumer in list(self.consumers.values()):
            if consumer.blocked and consumer.has_capacity():
                consumer.queue.unblock(consumer)

    def recover(self) -> None:
        """Requeue every unacknowledged message (basic.recover with requeue, or channel close)."""
        pending = sorted(self._unacked.items())
        self._unacked.clear()
        for _, (qm, queue, consumer, record) in pending:
            if record is not None:
                record.outcome = "requeue"
            queue.settle(qm, consumer, "requeue")
        if self.global_prefetch:
            self.wake_consumers()

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
