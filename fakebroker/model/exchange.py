"""Exchanges and their routing: direct, fanout, topic, headers (and the default exchange)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from .arguments import amqp_type, format_value
from .message import Message
from .topic import TopicTrie

EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")
_ROUTE_CACHE_SIZE = 4096
X_MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")


@dataclass(frozen=True)
class ExchangeRef:
    """A routing destination that is an exchange (exchange-to-exchange binding), not a queue."""

    name: str


#: Where an exchange routes to: a queue name, or another exchange.
Destination = str | ExchangeRef


@dataclass(frozen=True)
class Binding:
    source: str
    destination: str  # a queue name, or an exchange name when destination_type is "exchange"
    routing_key: str
    arguments: tuple[tuple[str, Any], ...] = ()
    destination_type: str = "queue"  # RabbitMQ's names: "queue" or "exchange"

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.arguments)

    @property
    def target(self) -> Destination:
        return self.destination if self.destination_type == "queue" else ExchangeRef(self.destination)


def freeze_arguments(arguments: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    if not arguments:
        return ()
    return tuple(sorted((k, _freeze(v)) for k, v in arguments.items()))


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(eq=False)
class Exchange:
    name: str
    type: str
    durable: bool = False
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)
    bindings: dict[Binding, None] = field(default_factory=dict)  # insertion-ordered set

    def __post_init__(self) -> None:
        self._direct: dict[str, dict[Destination, int]] = {}
        self._trie: TopicTrie[Destination] = TopicTrie()
        # Routing results by routing key while the bindings stay the same: devices publish to the same few
        # topics over and over, and matching is most of a publish's cost in the model. Headers exchanges
        # route on the message's headers, so they are not cached.
        self._routes: dict[str | None, tuple[Destination, ...]] = {}
        self._cacheable = self.type in ("direct", "topic", "fanout")

    def route_key(self, routing_key: str) -> tuple[Destination, ...]:
        """The destinations of a direct, topic or fanout exchange for ``routing_key``, queues sorted by name
        first (cached until a binding changes)."""
        key = None if self.type == "fanout" else routing_key
        found = self._routes.get(key)
        if found is None:
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                self._routes.clear()  # many distinct keys (one per device, say): start over rather than grow
            targets = self._destinations(routing_key)
            queues = [t for t in targets if isinstance(t, str)]
            if len(queues) == len(targets):
                queues.sort()
                found = self._routes[key] = tuple(queues)
            else:
                found = self._routes[key] = (
                    *sorted(queues), *sorted((t for t in targets if not isinstance(t, str)), key=lambda t: t.name))
        return found

    def add_binding(self, binding: Binding) -> bool:
        if binding in self.bindings:
            return False
        self.bindings[binding] = None
        self._routes.clear()
        if self.type == "direct":
            dests = self._direct.setdefault(binding.routing_key, {})
            target = binding.target
            dests[target] = dests.get(target, 0) + 1
        elif self.type == "topic":
            self._trie.add(binding.routing_key, binding.target)
        return True

    def remove_binding(self, binding: Binding) -> bool:
        if binding not in self.bindings:
            return False
        del self.bindings[binding]
        self._routes.clear()
        if self.type == "direct":
            dests = self._direct[binding.routing_key]
            target = binding.target
            dests[target] -= 1
            if not dests[target]:
                del dests[target]
            if not dests:
                del self._direct[binding.routing_key]
        elif self.type == "topic":
            self._trie.remove(binding.routing_key, binding.target)
        return True

    def route(self, message: Message) -> set[Destination]:
        """The queues (names) and exchanges (:class:`ExchangeRef`) bound here that ``message`` should reach."""
        if self.type == "headers":
            headers = message.headers
            return {b.target for b in self.bindings if headers_match(b.args, headers)}
        return set(self._destinations(message.routing_key))

    def _destinations(self, routing_key: str) -> Collection[Destination]:
        """What a direct, topic or fanout exchange routes ``routing_key`` to (not copied: read, do not keep)."""
        if self.type == "direct":
            return self._direct.get(routing_key, {}).keys()
        if self.type == "topic":
            return self._trie.match(routing_key)
        return {b.target for b in self.bindings}

    @property
    def alternate(self) -> str | None:
        """The ``alternate-exchange`` argument: where messages this exchange cannot route go."""
        value = self.arguments.get("alternate-exchange")
        return value if isinstance(value, str) else None


def headers_match(binding_args: dict[str, Any], headers: dict[str, Any]) -> bool:
    """The headers exchange rule, with RabbitMQ's ``x-match`` values all, any, all-with-x, any-with-x."""
    mode = binding_args.get("x-match", "all")
    with_x = mode in ("all-with-x", "any-with-x")
    wanted = {k: v for k, v in binding_args.items() if k != "x-match" and (with_x or not k.startswith("x-"))}
    if mode in ("any", "any-with-x"):
        return any(_header_ok(k, v, headers) for k, v in wanted.items())
    return all(_header_ok(k, v, headers) for k, v in wanted.items())


def _header_ok(key: str, expected: Any, headers: dict[str, Any]) -> bool:
    if key not in headers:
        return False
    if expected is None:
        return True  # a void binding value matches on presence alone
    actual = headers[key]
    # Erlang's == does not take true for 1 (Python's does).
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    return bool(actual == expected)


def check_headers_binding(arguments: dict[str, Any] | None) -> str | None:
    """``rabbit_exchange_type_headers:validate_binding/2``: the error text for a bad ``x-match``, or None."""
    if not arguments or "x-match" not in arguments:
        return None
    mode = arguments["x-match"]
    if not isinstance(mode, str):
        return f"Invalid x-match field type {amqp_type(mode)} (value {format_value(mode)}); expected longstr"
    if mode not in X_MATCH_MODES:
        return f'Invalid x-match field value <<"{mode}">>; expected all, any, all-with-x, or any-with-x'
    return None
