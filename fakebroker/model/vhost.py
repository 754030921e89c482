"""A virtual host: its exchanges, queues and bindings, and the publish → route → enqueue path."""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Any

from ..errors import AccessRefused, CommandInvalid, NotFound, PreconditionFailed, ResourceLocked
from .arguments import args_inequivalence, check_queue_arguments, format_value
from .exchange import EXCHANGE_TYPES, Binding, Exchange, ExchangeRef, check_headers_binding, freeze_arguments
from .message import Message
from .queue import Queue

if TYPE_CHECKING:
    from .broker import Broker

PREDECLARED = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
    "amq.rabbitmq.trace": "topic",  # internal: the firehose tracer publishes there, clients cannot
}
#: Exchange arguments RabbitMQ compares on redeclare (others may differ freely).
EXCHANGE_EQUIVALENCE_ARGUMENTS = ("alternate-exchange",)
DEFAULT_EXCHANGE_REFUSED = "operation not permitted on the default exchange"
#: Who acts when the broker itself deletes or purges a queue (auto-delete, x-expires, the Python API).
BROKER = object()


def generated_name(prefix: str) -> str:
    """``prefix`` + 22 base64url characters, the shape of RabbitMQ's ``amq.gen-…`` names."""
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


class VHost:
    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name
        self.exchanges: dict[str, Exchange] = {"": Exchange("", "direct", durable=True)}
        for ex_name, ex_type in PREDECLARED.items():
            self.exchanges[ex_name] = Exchange(ex_name, ex_type, durable=True,
                                               internal=ex_name == "amq.rabbitmq.trace")
        self.queues: dict[str, Queue] = {}

    # -- lookups --------------------------------------------------------------------------------
    def exchange(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
        return exchange

    def check_publishable(self, exchange: str) -> None:
        """NOT_FOUND for a missing exchange, ACCESS_REFUSED for an internal one, as basic.publish is refused."""
        if self.exchange(exchange).internal:
            raise AccessRefused(f"cannot publish to internal exchange '{exchange}' in vhost '{self.name}'")

    def queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            raise NotFound(f"no queue '{name}' in vhost '{self.name}'")
        return queue

    def queue_for(self, name: str, owner: object) -> Queue:
        """A queue the connection ``owner`` may use (exclusive queues belong to their connection)."""
        queue = self.queue(name)
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise self._locked(name)
        return queue

    def _locked(self, name: str) -> ResourceLocked:
        return ResourceLocked(
            f"cannot obtain exclusive access to locked queue '{name}' in vhost '{self.name}'. It could be "
            "originally declared on another connection or the exclusive property value does not match "
            "that of the original declaration."
        )

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
        arguments = dict(arguments or {})
        if passive:
            if name == "":
                raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
            return self.exchange(name)
        # rabbit_channel's order: the type, the default exchange, the reserved prefix (new exchanges only),
        # then equivalence with an existing one.
        if type not in EXCHANGE_TYPES:
            # rabbit_exchange:check_type/1: a name that is no registered type ("invalid" is only for an Erlang atom
            # that exists but is not an exchange type, which no client can tell apart).
            raise CommandInvalid(f"unknown exchange type '{type}'")
        if name == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
        existing = self.exchanges.get(name)
        if existing is not None:
            resource = f"exchange '{name}' in vhost '{self.name}'"
            for label, mine, theirs in (("type", existing.type, type), ("durable", existing.durable, durable),
                                        ("auto_delete", existing.auto_delete, auto_delete),
                                        ("internal", existing.internal, internal)):
                if mine != theirs:
                    raise PreconditionFailed(f"inequivalent arg '{label}' for {resource}: "
                                             f"received '{format_value(theirs)}' but current is '{format_value(mine)}'")
            problem = args_inequivalence(existing.arguments, arguments, EXCHANGE_EQUIVALENCE_ARGUMENTS, resource)
            if problem:
                raise PreconditionFailed(problem)
            return existing
        if name.startswith("amq."):
            raise AccessRefused(f"exchange name '{name}' contains reserved prefix 'amq.*'")
        exchange = Exchange(name, type, durable, auto_delete, internal, arguments)
        self.exchanges[name] = exchange
        return exchange

    def delete_exchange(self, name: str, if_unused: bool = False) -> None:
        """exchange.delete; deleting a missing exchange is not an error in RabbitMQ 3.x."""
        if name == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
        if name.startswith("amq."):
            raise AccessRefused(f"deletion of system exchange '{name}' in vhost '{self.name}' not allowed")
        exchange = self.exchanges.get(name)
        if exchange is None:
            return
        if if_unused and exchange.bindings:
            raise PreconditionFailed(f"exchange '{name}' in vhost '{self.name}' in use")
        del self.exchanges[name]
        # Its bindings as a source go with it; bindings to it from other exchanges go too, which may leave an
        # auto-delete source with nothing bound (rabbit_binding:remove_for_destination).
        self._remove_bindings_to(name, "exchange")

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
        if exclusive and owner is None:
            raise ValueError("an exclusive queue needs an owner (the declaring connection)")
        if passive:
            queue = self.queue_for(name, owner)
            queue.touch()
            return queue
        if not name:
            name = generated_name("amq.gen-")
        elif name.startswith("amq."):
            # Even an existing amq.gen-… queue cannot be redeclared by name (only passively).
            raise AccessRefused(f"queue name '{name}' contains reserved prefix 'amq.*'")
        existing = self.queues.get(name)
        if existing is not None:
            self.queue_for(name, owner)
            if existing.exclusive != exclusive:
                raise self._locked(name)
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

    def delete_queue(self, name: str, if_unused: bool = False, if_empty: bool = False,
                     owner: object = BROKER) -> int:
        """queue.delete; ``owner`` (a connection) may not delete another connection's exclusive queue."""
        queue = self.queues.get(name)
        if queue is None:
            return 0  # queue.delete of a missing queue is not an error in RabbitMQ 3.x
        if owner is not BROKER:
            self.queue_for(name, owner)
        if if_unused and queue.consumers:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' in use")
        if if_empty and queue.messages:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' not empty")
        count = queue.message_count
        del self.queues[name]
        self._remove_bindings_to(name, "queue")
        queue.on_deleted()
        self.broker.emit("queue_deleted", self.name, name)
        return count

    def purge_queue(self, name: str, owner: object = BROKER) -> int:
        """queue.purge: drop the ready messages (no dead-lettering); returns how many there were."""
        queue = self.queue(name) if owner is BROKER else self.queue_for(name, owner)
        return queue.purge()

    def connection_closed(self, owner: object) -> None:
        """Delete the exclusive queues of a connection that went away."""
        for queue in [q for q in self.queues.values() if q.exclusive_owner is owner]:
            self.delete_queue(queue.name)

    # -- bindings -------------------------------------------------------------------------------
    def bind(self, queue: str, exchange: str, routing_key: str = "", arguments: dict[str, Any] | None = None,
             owner: object = None) -> None:
        if exchange == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
        # RabbitMQ looks the exchange up first: with both missing, the error names the exchange.
        ex = self.exchange(exchange)
        self.queue_for(queue, owner)
        if ex.type == "headers":
            problem = check_headers_binding(arguments)
            if problem:
                raise PreconditionFailed(problem)
        ex.add_binding(Binding(exchange, queue, routing_key, freeze_arguments(arguments)))

    def unbind(self, queue: str, exchange: str, routing_key: str = "",
               arguments: dict[str, Any] | None = None, owner: object = None) -> None:
        """queue.unbind; like RabbitMQ 3.x, a missing queue, exchange or binding is not an error (nor is
        another connection's exclusive queue)."""
        if exchange == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
        ex = self.exchanges.get(exchange)
        if ex is None:
            return
        if ex.remove_binding(Binding(exchange, queue, routing_key, freeze_arguments(arguments))):
            self._maybe_auto_delete_exchange(ex)

    def bind_exchange(self, destination: str, source: str, routing_key: str = "",
                      arguments: dict[str, Any] | None = None) -> None:
        """exchange.bind: messages routed by ``source`` also go through ``destination``."""
        if source == "" or destination == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
        # rabbit_binding:add reports the first missing resource, the source before the destination.
        src = self.exchange(source)
        self.exchange(destination)
        if src.type == "headers":
            problem = check_headers_binding(arguments)
            if problem:
                raise PreconditionFailed(problem)
        src.add_binding(Binding(source, destination, routing_key, freeze_arguments(arguments), "exchange"))

    def unbind_exchange(self, destination: str, source: str, routing_key: str = "",
                        arguments: dict[str, Any] | None = None) -> None:
        """exchange.unbind; as with queue.unbind, a missing exchange or binding is not an error in RabbitMQ 3.x."""
        if source == "" or destination == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
        src = self.exchanges.get(source)
        if src is None:
            return
        if src.remove_binding(Binding(source, destination, routing_key, freeze_arguments(arguments), "exchange")):
            self._maybe_auto_delete_exchange(src)

    def _remove_bindings_to(self, name: str, kind: str) -> None:
        for exchange in list(self.exchanges.values()):
            gone = [b for b in exchange.bindings if b.destination == name and b.destination_type == kind]
            for binding in gone:
                exchange.remove_binding(binding)
            if gone:
                self._maybe_auto_delete_exchange(exchange)

    def _maybe_auto_delete_exchange(self, exchange: Exchange) -> None:
        if exchange.auto_delete and not exchange.bindings and self.exchanges.get(exchange.name) is exchange:
            del self.exchanges[exchange.name]
            self._remove_bindings_to(exchange.name, "exchange")

    def bindings(self) -> list[Binding]:
        """Every binding, the implicit default-exchange ones first, as ``rabbitmqctl list_bindings`` shows."""
        out = [Binding("", name, name) for name in self.queues]
        for exchange in self.exchanges.values():
            out.extend(exchange.bindings)
        return out

    # -- routing --------------------------------------------------------------------------------
    def route(self, message: Message) -> list[str]:
        """Queue names ``message`` goes to, sorted (RabbitMQ gives no order).

        As ``rabbit_exchange:route/2``: the exchanges are visited breadth first, each once (a binding cycle
        ends there); an exchange that routes the message nowhere hands it to its alternate exchange."""
        exchange = self.exchanges.get(message.exchange) or self.exchange(message.exchange)  # raises NOT_FOUND
        if exchange.name == "":
            return [message.routing_key] if message.routing_key in self.queues else []
        if exchange._cacheable:
            cached = exchange.route_key(message.routing_key)
            if (not cached or not isinstance(cached[-1], ExchangeRef)) and (cached or exchange.alternate is None):
                return list(cached)  # type: ignore[arg-type]  # only queue names: the common, fast case
            first: set[Any] = set(cached)
        else:
            first = exchange.route(message)
            if exchange.alternate is None and not any(isinstance(d, ExchangeRef) for d in first):
                return sorted(first)  # type: ignore[arg-type]
        queues: set[str] = set()
        seen = {exchange.name}
        work: list[tuple[Exchange, set[Any]]] = [(exchange, first)]
        while work:
            current, found = work.pop(0)
            targets: list[Any] = list(found)
            if not found and current.alternate is not None:
                targets.append(ExchangeRef(current.alternate))
            for target in targets:
                if isinstance(target, str):
                    queues.add(target)
                elif target.name not in seen and target.name in self.exchanges:
                    seen.add(target.name)
                    nxt = self.exchanges[target.name]
                    work.append((nxt, nxt.route(message)))
        return sorted(queues)

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
        # A publisher may have set x-death to anything; RabbitMQ then starts a fresh list.
        prior = headers.get("x-death")
        deaths: list[Any] = [dict(d) if isinstance(d, dict) else d for d in prior] if isinstance(prior, list) else []
        routing_keys = [message.routing_key]
        entry = next((d for d in deaths
                      if isinstance(d, dict) and d.get("queue") == queue.name and d.get("reason") == reason), None)
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


def _is_cycle(queue: str, deaths: list[Any]) -> bool:
    """``rabbit_dead_letter:is_cycle/2``: the queue died this message before, with no reject since."""
    for death in deaths:
        if not isinstance(death, dict) or death.get("reason") == "rejected":
            # Anything but a death record was put there by a client: not a fully automatic cycle.
            return False
        if death.get("queue") == queue:
            return True
    return False
