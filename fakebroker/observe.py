"""Watching a broker from a test: message criteria and near-miss reports, the connection journal, traffic
reports, and message faults (drop or delay the next N matching messages).

Everything here runs on the broker's event loop, or reads a broker whose loop has stopped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .model.broker import LoggedMessage
from .protocols import criteria as protocol_criteria

if TYPE_CHECKING:
    from .node import Node
    from .server.runtime import Connection

#: The criteria every message filter, wait, assertion and fault accepts (protocols add theirs: ``topic``, ...).
CRITERIA: dict[str, str] = {
    "routing_key": "the AMQP routing key, exactly",
    "exchange": "the exchange it was published to",
    "queue": "a queue it was routed to",
    "protocol": "who published it: mqtt, mqtt-will, api, dead-letter, ...",
    "client_id": "the publishing client's id (None for the Python API)",
    "vhost": "the virtual host",
    "payload": "the body: bytes, str (UTF-8) or a predicate on the bytes",
    "body": "the same as payload",
    "headers": "a dict every item of which is in the message's headers",
    "delivered_to": "a client id it was delivered to",
    "routed": "True when it reached at least one queue",
    "fault": 'what a message fault did to it: "dropped", "delayed" or None',
    **{name: c.doc for name, c in protocol_criteria().items()},
}
#: The criteria that can be decided when a message is published, before routing (for message faults).
BEFORE_ROUTING = (*protocol_criteria(), "routing_key", "exchange", "protocol", "client_id", "vhost", "payload", "body",
                  "headers")


class MessageTimeout(AssertionError, TimeoutError):
    """A wait for a message ran out of time; the text lists what the broker saw instead."""


def check_criteria(criteria: Mapping[str, Any], allowed: Iterable[str] = CRITERIA) -> None:
    allowed = tuple(allowed)
    unknown = sorted(set(criteria) - set(allowed))
    if unknown:
        raise TypeError(f"unknown message criteria {', '.join(unknown)}; use {', '.join(allowed)}")


def _body_ok(body: bytes, wanted: Any) -> bool:
    if callable(wanted):
        return bool(wanted(body))
    return body == (wanted.encode() if isinstance(wanted, str) else wanted)


def _ok(m: LoggedMessage, name: str, wanted: Any) -> bool:
    extra = protocol_criteria().get(name)
    if extra is not None:
        return extra.match(m, wanted)
    if name in ("payload", "body"):
        return _body_ok(m.body, wanted)
    if name == "queue":
        return wanted in m.queues
    if name == "delivered_to":
        return any(c == wanted for _, c in m.deliveries)
    if name == "headers":
        headers = m.headers
        return all(k in headers and headers[k] == v for k, v in wanted.items())
    if name == "routed":
        return bool(m.routed == wanted)
    return bool(getattr(m, name) == wanted)


def matches(m: LoggedMessage, criteria: Mapping[str, Any]) -> bool:
    """Whether ``m`` meets every criterion (see :data:`CRITERIA`)."""
    return all(_ok(m, name, wanted) for name, wanted in criteria.items())


def _short(value: Any) -> str:
    if isinstance(value, bytes) and len(value) > 60:
        return repr(value[:57] + b"...")
    if callable(value):
        return getattr(value, "__name__", repr(value))
    return repr(value)


def _actual(m: LoggedMessage, name: str) -> Any:
    extra = protocol_criteria().get(name)
    if extra is not None:
        return extra.actual(m)
    if name in ("payload", "body"):
        return m.body
    if name == "queue":
        return list(m.queues)
    if name == "delivered_to":
        return [c for _, c in m.deliveries]
    return getattr(m, name)


def mismatches(m: LoggedMessage, criteria: Mapping[str, Any]) -> list[str]:
    """One line per criterion ``m`` fails, saying what was expected and what it has."""
    out = []
    for name, wanted in criteria.items():
        if _ok(m, name, wanted):
            continue
        if callable(wanted):
            out.append(f"{name}: {_short(wanted)}({_short(m.body)}) is false")
        elif name in protocol_criteria():
            out.append(f"{name}: {wanted!r} does not match {_actual(m, name)!r}")
        else:
            out.append(f"{name}: expected {_short(wanted)}, got {_short(_actual(m, name))}")
    return out


def format_criteria(criteria: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in criteria.items()) or "(any message)"


def describe(m: LoggedMessage) -> str:
    """The log line of a message, with who it was delivered to."""
    text = m.describe()
    if m.deliveries:
        text += "; delivered to " + ", ".join(f"{c or '?'} (via {q})" for q, c in m.deliveries)
    return text


def explain(headline: str, log: Sequence[LoggedMessage], criteria: Mapping[str, Any], limit: int = 10) -> str:
    """``headline`` followed by the messages that came closest to ``criteria`` and why each one failed."""
    lines = [headline]
    if not log:
        lines.append("The message log is empty: the broker accepted no message.")
        return "\n".join(lines)
    scored = sorted(((mismatches(m, criteria), m) for m in log), key=lambda t: (len(t[0]), -t[1].seq))
    near = [(reasons, m) for reasons, m in scored if reasons]
    if not near:
        return "\n".join(lines)
    shown = near[:limit]
    lines.append(f"Near misses ({len(shown)} of {len(near)} non-matching messages, closest first):")
    for reasons, m in shown:
        lines.append(f"  {describe(m)}")
        lines.extend(f"      - {reason}" for reason in reasons)
    return "\n".join(lines)


def listing(log: Sequence[LoggedMessage], limit: int = 20) -> str:
    lines = [f"  {describe(m)}" for m in log[:limit]]
    if len(log) > limit:
        lines.append(f"  ... and {len(log) - limit} more")
    return "\n".join(lines)


# -- the journal ------------------------------------------------------------------------------------------
class Journal:
    """What happened to connections, and the faults a test injected, for traffic reports.

    Fed by the broker's connect/disconnect hooks on its event loop; keeps the last ``limit`` events.
    """

    def __init__(self, node: Node, limit: int = 500) -> None:
        self._node = node
        self.events: deque[tuple[float, str, Any]] = deque(maxlen=limit)

    def attach(self) -> None:
        self._node.model.on("connect", self._opened)
        self._node.model.on("disconnect", self._closed)

    def _opened(self, conn: Connection) -> None:
        self.events.append((self._node.clock.now(), "opened", conn))

    def _closed(self, conn: Connection) -> None:
        subscriptions = conn.session.describe().get("subscriptions") or {}
        reason = _close_reason(conn) or ("the broker went down" if self._node.stopping else "")
        self.events.append((self._node.clock.now(), "closed", (conn, dict(subscriptions), reason)))

    def note(self, text: str) -> None:
        self.events.append((self._node.clock.now(), "note", text))


def _conn_text(conn: Connection) -> str:
    session = conn.session
    who = f"client_id={session.client_id!r}" if session.client_id is not None else "no client id yet"
    user = f" user={session.user!r}" if session.user is not None else ""
    return f"conn#{conn.id} {conn.protocol} {who}{user} from {conn.peer[0]}:{conn.peer[1]}"


def _close_reason(conn: Connection) -> str:
    return conn.session.close_reason or ""


def traffic_report(node: Node, journal: Journal, messages: int = 50) -> str:
    """A plain-text account of a broker's recent traffic: connections, clients, queues, messages."""
    clock = node.clock
    kind = type(clock).__name__
    addresses = " ".join(f"{name}={a.host}:{a.port}" for name, a in node.addresses.items())
    lines = [f"broker {addresses}; clock t={clock.now():.3f} ({kind})"]

    lines.append("connections and faults:")
    if not journal.events:
        lines.append("  (none)")
    for when, what, item in journal.events:
        if what == "opened":
            lines.append(f"  t={when:.3f} opened {_conn_text(item)}")
        elif what == "closed":
            conn, subscriptions, reason = item
            extra = f" subscriptions={subscriptions}" if subscriptions else ""
            lines.append(f"  t={when:.3f} closed {_conn_text(conn)}{extra}{f' ({reason})' if reason else ''}")
        else:
            lines.append(f"  t={when:.3f} {item}")

    lines.append("connected now:")
    conns = list(node.runtime.connections.values())
    if not conns:
        lines.append("  (none)")
    for conn in conns:
        d = conn.session.describe()
        parts = [_conn_text(conn)]
        if d.get("subscriptions"):
            parts.append(f"subscriptions={d['subscriptions']}")
        will = d.get("will")
        if will:
            parts.append(f"will=({will['topic']!r}, {_short(will['payload'])}, qos {will['qos']}"
                         f"{', retain' if will['retain'] else ''})")
        if conn.stalled:
            parts.append("STALLED")
        lines.append("  " + " ".join(parts))

    lines.append("queues:")
    many = len(node.model.vhosts) > 1
    count = 0
    for vh in node.model.vhosts.values():
        bound: dict[str, list[str]] = {}
        for exchange in vh.exchanges.values():
            for b in exchange.bindings:
                bound.setdefault(b.destination, []).append(f"{b.source} {b.routing_key!r}")
        for q in vh.queues.values():
            count += 1
            flags = [f for f, on in (("durable", q.durable), ("auto-delete", q.auto_delete),
                                     ("exclusive", q.exclusive)) if on]
            name = f"{vh.name} {q.name}" if many else q.name
            lines.append(f"  {name} [{' '.join(flags) or 'transient'}] ready={q.message_count} "
                         f"unacked={q.unacked} consumers={q.consumer_count}"
                         + (f" bound: {', '.join(bound[q.name])}" if q.name in bound else ""))
    if not count:
        lines.append("  (none)")

    log = node.model.log
    recent = log[-messages:] if messages > 0 else []
    lines.append(f"messages (last {len(recent)} of {len(log)}):" if len(recent) < len(log) else
                 f"messages ({len(log)}):")
    if not log:
        lines.append("  (none)")
    lines.extend(f"  {describe(m)}" for m in recent)
    return "\n".join(lines)


# -- message faults ---------------------------------------------------------------------------------------
class MessageFault:
    """``drop_next``/``delay_next``: applies to the next ``remaining`` published messages matching ``criteria``.

    ``matched`` lists the log entries it affected. :meth:`cancel` (through the broker object) removes it early.
    """

    def __init__(self, node: Node, action: str | float, count: int, criteria: dict[str, Any],
                 run: Callable[[Callable[[], None]], None], errors: list[Exception] | None = None) -> None:
        if count < 1:
            raise ValueError("the number of messages must be at least 1")
        check_criteria(criteria, BEFORE_ROUTING)
        self.action = action
        self.remaining = count
        self.criteria = criteria
        self.matched: list[LoggedMessage] = []
        self._node = node
        self._run = run
        self._errors = errors if errors is not None else []

    def __call__(self, logged: LoggedMessage) -> str | float | None:
        if self.remaining <= 0:
            return None
        try:
            matched = matches(logged, self.criteria)
        except Exception as exc:
            # A failing payload predicate is the test's bug: report it there and leave the publisher alone.
            self._errors.append(exc)
            self._remove()
            return None
        if not matched:
            return None
        self.remaining -= 1
        self.matched.append(logged)
        if self.remaining == 0:
            self._remove()
        return self.action

    def _remove(self) -> None:
        hooks = self._node.model.publish_hooks
        if self in hooks:
            hooks.remove(self)

    def cancel(self) -> None:
        """Stop affecting messages (the ones already matched stay dropped or delayed)."""
        self._run(self._remove)

    def __repr__(self) -> str:
        what = "drop" if self.action == "drop" else f"delay {self.action}s"
        return f"<MessageFault {what} next {self.remaining} matching {format_criteria(self.criteria)}>"
