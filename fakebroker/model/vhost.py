"""A virtual host: its exchanges, queues and bindings, and the publish → route → enqueue path."""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Any

from ..errors import AccessRefused, NotFound, PreconditionFailed, ResourceLocked
from .exchange import EXCHANGE_TYPES, Binding, Exchange, freeze_arguments
from .message import Message
from .queue import Queue, check_queue_arguments

if TYPE_CHECKING:
    from .broker import Broker

PREDECLARED = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
}


def generated_name(prefix: str) -> str:
    """``prefix`` + 22 base64url characters, the shape of RabbitMQ's ``amq.gen-…`` names."""
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


class VHost:
    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name
        self.exchanges: dict[str, Exchange] = {"": Exchange("", "direct", durable=True)}
        for ex_name, ex_type in PREDECLARED.items():
            self.exchanges[ex_name] = Exchange(ex_name, ex_type, durable=True)
        self.queues: dict[str, Queue] = {}
        # MQTT retained messages (RabbitMQ keeps one store per vhost): topic -> (message, qos).
        self.retained: dict[str, tuple[Message, int]] = {}

    # -- lookups --------------------------------------------------------------------------------
    def exchange(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
        return exchange

    def queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            raise NotFound(f"no queue '{name}' in vhost '{self.name}'")
        return queue

    def queue_for(self, name: str, owner: object) -> Queue:
        """A queue the connection ``owner`` may use (exclusive queues belong to their connection)."""
        queue = self.queue(name)
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise ResourceLocked(
                f"cannot obtain exclusive access to locked queue '{name}' in vhost '{self.name}'. It could be "
                "originally declared on another connection or the exclusive property value does not match "
                "that of the original declaration."
            )
        return queue

    # -- exchanges ------------------------------------------------------------------------------
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
    ) -> Exchange:
        existing = self.exchanges.get(name)
        if passive:
            return self.exchange(name)
        if name == "" or (name.startswith("amq.") and existing is None):
            raise AccessRefused(f"exchange name '{name}' contains reserved prefix 'amq.*'")
        if type not in EXCHANGE_TYPES:
            raise PreconditionFailed(f"invalid exchange type '{type}'")
        if existing is not None:
            if existing.type != type:
                raise PreconditionFailed(
                    f"inequivalent arg 'type' for exchange '{name}' in vhost '{self.name}': "
                    f"received '{type}' but current is '{existing.type}'"
                )
            if existing.durable != durable:
                raise PreconditionFailed(
                    f"inequivalent arg 'durable' for exchange '{name}' in vhost '{self.name}': "
                    f"received '{str(durable).lower()}' but current is '{str(existing.durable).lower()}'"
                )
            return existing
        exchange = Exchange(name, type, durable, auto_delete, internal, dict(arguments or {}))
        self.exchanges[name] = exchange
        return exchange

    def delete_exchange(self, name: str, if_unused: bool = False) -> None:
        exchange = self.exchange(name)
        if name == "" or name.startswith("amq."):
            raise AccessRefused(f"exchange name '{name}' contains reserved prefix 'amq.*'")
        if if_unused and exchange.bindings:
            raise PreconditionFailed(f"exchange '{name}' in vhost '{self.name}' in use")
        del self.exchanges[name]

    # -- queues ---------------------------------------------------------------------------------
    def declare_queue(
        self,
        name: str = "",
        *,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        passive: bool = False,
        owner: object = None,
    ) -> Queue:
        arguments = dict(arguments or {})
        if passive:
            queue = self.queue_for(name, owner)
            queue.touch()
            return queue
        if not name:
            name = generated_name("amq.gen-")
        elif name.startswith("amq.") and name not in self.queues:
            raise AccessRefused(f"queue name '{name}' contains reserved prefix 'amq.*'")
        existing = self.queues.get(name)
        if existing is not None:
            self.queue_for(name, owner)
            if existing.exclusive != exclusive:
                raise ResourceLocked(
                    f"cannot obtain exclusive access to locked queue '{name}' in vhost '{self.name}'. It could "
                    "be originally declared on another connection or the exclusive property value does not "
                    "match that of the original declaration."
                )
            problem = existing.equivalent_to(durable, exclusive, auto_delete, arguments)
            if problem:
                raise PreconditionFailed(problem)
            existing.touch()
            return existing
        check_queue_arguments(arguments, name, self.name)
        queue = Queue(name, self, durable, auto_delete, owner if exclusive else None, arguments)
        self.queues[name] = queue
        # Every queue is bound to the default exchange under its own name; that binding is implicit.
        return queue

    def delete_queue(self, name: str, if_unused: bool = False, if_empty: bool = False) -> int:
        queue = self.queues.get(name)
        if queue is None:
            return 0  # queue.delete of a missing queue is not an error in RabbitMQ 3.x
        if if_unused and queue.consumers:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' in use")
        if if_empty and queue.messages:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' is not empty")
        count = queue.message_count
        del self.queues[name]
        for exchange in list(self.exchanges.values()):
            for binding in [b for b in exchange.bindings if b.destination == name]:
                exchange.remove_binding(binding)
            self._maybe_auto_delete_exchange(exchange)
        queue.on_deleted()
        self.broker.emit("queue_deleted", self.name, name)
        return count

    def connection_closed(self, owner: object) -> None:
        """Delete the exclusive queues of a connection that went away."""
        for queue in [q for q in self.queues.values() if q.exclusive_owner is owner]:
            self.delete_queue(queue.name)

    # -- bindings -------------------------------------------------------------------------------
    def bind(self, queue: str, exchange: str, routing_key: str = "", arguments: dict[str, Any] | None = None,
             owner: object = None) -> None:
        if exchange == "":
            raise AccessRefused("operation not permitted on the default exchange")
        self.queue_for(queue, owner)
        self.exchange(exchange).add_binding(Binding(exchange, queue, routing_key, freeze_arguments(arguments)))

    def unbind(self, queue: str, exchange: str, routing_key: str = "",
               arguments: dict[str, Any] | None = None, owner: object = None) -> None:
        if exchange == "":
            raise AccessRefused("operation not permitted on the default exchange")
        self.queue_for(queue, owner)
        ex = self.exchange(exchange)
        ex.remove_binding(Binding(exchange, queue, routing_key, freeze_arguments(arguments)))
        self._maybe_auto_delete_exchange(ex)

    def _maybe_auto_delete_exchange(self, exchange: Exchange) -> None:
        if exchange.auto_delete and not exchange.bindings and exchange.name in self.exchanges:
            del self.exchanges[exchange.name]

    def bindings(self) -> list[Binding]:
        """Every binding, the implicit default-exchange ones first, as ``rabbitmqctl list_bindings`` shows."""
        out = [Binding("", name, name) for name in self.queues]
        for exchange in self.exchanges.values():
            out.extend(exchange.bindings)
        return out

    # -- routing --------------------------------------------------------------------------------
    def route(self, message: Message) -> list[str]:
        """Queue names ``message`` goes to, sorted (RabbitMQ gives no order)."""
        exchange = self.exchange(message.exchange)
        if exchange.name == "":
            return [message.routing_key] if message.routing_key in self.queues else []
        return sorted(exchange.route(message))

    def deliver(self, message: Message, queues: list[str]) -> list[str]:
        """Enqueue into each queue; return the ones that accepted it (reject-publish may refuse)."""
        accepted = []
        for name in queues:
            queue = self.queues.get(name)
            if queue is not None and queue.enqueue(message):
                accepted.append(name)
        return accepted

    def dead_letter(self, message: Message, queue: Queue, reason: str) -> None:
        """Republish a message that expired, overflowed or was rejected, if the queue has a DLX."""
        dlx = queue.arguments.get("x-dead-letter-exchange")
        self.broker.emit("dropped", self.name, queue.name, message, reason)
        if dlx is None or dlx not in self.exchanges:
            return
        properties = dict(message.properties)
        headers = dict(properties.get("headers") or {})
        deaths: list[dict[str, Any]] = [dict(d) for d in headers.get("x-death", [])]
        routing_keys = [message.routing_key]
        entry = next((d for d in deaths if d.get("queue") == queue.name and d.get("reason") == reason), None)
        if entry is not None:
            deaths.remove(entry)
            entry["count"] = entry.get("count", 1) + 1
        else:
            entry = {
                "count": 1,
                "reason": reason,
                "queue": queue.name,
                "time": int(self.broker.wallclock_seconds()),
                "exchange": message.exchange,
                "routing-keys": routing_keys,
            }
            if "expiration" in properties:
                entry["original-expiration"] = properties["expiration"]
        deaths.insert(0, entry)
        properties.pop("expiration", None)
        headers["x-death"] = deaths
        headers.setdefault("x-first-death-reason", reason)
        headers.setdefault("x-first-death-queue", queue.name)
        headers.setdefault("x-first-death-exchange", message.exchange)
        properties["headers"] = headers
        key = queue.arguments.get("x-dead-letter-routing-key", message.routing_key)
        dead = Message(dlx, key, message.body, properties)
        targets = self.route(dead)
        if reason != "rejected":
            targets = [t for t in targets if not _is_cycle(t, deaths)]
        self.broker.publish_message(dead, protocol="dead-letter", vhost=self, queues=targets)


def _is_cycle(queue: str, deaths: list[dict[str, Any]]) -> bool:
    """``rabbit_dead_letter:is_cycle/2``: the queue died this message before, with no reject since."""
    for death in deaths:
        if death.get("reason") == "rejected":
            return False
        if death.get("queue") == queue:
            return True
    return False
