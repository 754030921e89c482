"""The connection journal and the plain-text traffic report of a broker."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..node import Node
    from ..server.runtime import Connection
from .matching import _short, describe


@dataclass(eq=False)
class ConnectionSummary:
    """What the journal remembers of a connection: a few fields, not the connection (whose session, socket and
    task state would otherwise stay alive for as long as the journal holds the event)."""

    __slots__ = ("client_id", "id", "peer", "protocol", "user")
    id: int
    protocol: str
    peer: tuple[str, int]
    client_id: str | None
    user: str | None

    @classmethod
    def of(cls, conn: Connection) -> ConnectionSummary:
        session = conn.session
        return cls(conn.id, conn.protocol, conn.peer, session.client_id, session.user)

    def refresh(self, conn: Connection) -> None:
        """Take the identity the client gave after it connected."""
        self.client_id, self.user = conn.session.client_id, conn.session.user


class Journal:
    """What happened to connections, and the faults a test injected, for traffic reports.

    Fed by the broker's connect/disconnect hooks on its event loop; keeps the last ``limit`` events, each with a
    :class:`ConnectionSummary` rather than the connection.
    """

    def __init__(self, node: Node, limit: int = 500) -> None:
        self._node = node
        self.events: deque[tuple[float, str, Any]] = deque(maxlen=limit)
        # The summaries of open connections whose "opened" event is still kept, by id (oldest first): at most
        # ``limit``, not one for each of 10,000 idle connections.
        self._open: dict[int, ConnectionSummary] = {}
        self._limit = limit

    def attach(self) -> None:
        self._node.model.on("connect", self._opened)
        self._node.model.on("disconnect", self._closed)

    def _opened(self, conn: Connection) -> None:
        summary = self._open[conn.id] = ConnectionSummary.of(conn)
        self.events.append((self._node.clock.now(), "opened", summary))
        if len(self._open) > self._limit:
            del self._open[next(iter(self._open))]  # its "opened" event has left the deque

    def _closed(self, conn: Connection) -> None:
        summary = self._open.pop(conn.id, None) or ConnectionSummary.of(conn)
        summary.refresh(conn)  # the "opened" event shares it: it shows the client id too
        described = conn.session.describe()
        subscriptions = described.get("subscriptions") or {}
        reason = _close_reason(conn) or ("the broker went down" if self._node.stopping else "")
        self.events.append((self._node.clock.now(), "closed",
                            (summary, dict(subscriptions), reason, described.get("dropped"))))

    def note(self, text: str) -> None:
        self.events.append((self._node.clock.now(), "note", text))

    def refresh(self) -> None:
        """Bring the summaries of open connections up to date (before a report)."""
        live = self._node.runtime.connections
        for conn_id, summary in self._open.items():
            conn = live.get(conn_id)
            if conn is not None:
                summary.refresh(conn)


def _conn_text(conn: Connection | ConnectionSummary) -> str:
    if isinstance(conn, ConnectionSummary):
        client_id, user = conn.client_id, conn.user
    else:
        client_id, user = conn.session.client_id, conn.session.user
    who = f"client_id={client_id!r}" if client_id is not None else "no client id yet"
    user_text = f" user={user!r}" if user is not None else ""
    return f"conn#{conn.id} {conn.protocol} {who}{user_text} from {conn.peer[0]}:{conn.peer[1]}"


def _close_reason(conn: Connection) -> str:
    return conn.session.close_reason or ""


def traffic_report(node: Node, journal: Journal, messages: int = 50) -> str:
    """A plain-text account of a broker's recent traffic: connections, clients, queues, messages."""
    clock = node.clock
    kind = type(clock).__name__
    addresses = " ".join(f"{name}={a.host}:{a.port}" for name, a in node.addresses.items())
    lines = [f"broker {addresses}; clock t={clock.now():.3f} ({kind})"]

    lines.append("connections and faults:")
    journal.refresh()
    if not journal.events:
        lines.append("  (none)")
    for when, what, item in journal.events:
        if what == "opened":
            lines.append(f"  t={when:.3f} opened {_conn_text(item)}")
        elif what == "closed":
            conn, subscriptions, reason, dropped = item
            extra = f" subscriptions={subscriptions}" if subscriptions else ""
            extra += f" dropped={dropped} (not reading)" if dropped else ""
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
        if d.get("dropped"):
            parts.append(f"dropped={d['dropped']} (QoS 0 messages it was too far behind in reading to get)")
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
    recent = list(log)[-messages:] if messages > 0 else []
    lines.append(f"messages (last {len(recent)} of {len(log)}):" if len(recent) < len(log) else
                 f"messages ({len(log)}):")
    if not log:
        lines.append("  (none)")
    lines.extend(f"  {describe(m)}" for m in recent)
    return "\n".join(lines)


