"""The connection journal and the plain-text traffic report of a broker."""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..node import Node
    from ..server.runtime import Connection
from .matching import _short, describe


class ConnectionSummary:
    """What the journal remembers of a connection: a few fields, not the connection (whose session, socket and
    task state would otherwise stay alive for as long as the journal holds the event). A "closed" event's summary
    also has the connection's last ``subscriptions``, its close ``reason`` and the messages it ``dropped``."""

    __slots__ = ("client_id", "dropped", "id", "peer", "protocol", "reason", "subscriptions", "user")

    def __init__(self) -> None:
        self.fill(0, "", ("", 0), None, None)

    def fill(self, conn_id: int, protocol: str, peer: tuple[str, int], client_id: str | None,
             user: str | None) -> None:
        self.id, self.protocol, self.peer, self.client_id, self.user = conn_id, protocol, peer, client_id, user
        self.subscriptions: dict[str, Any] | None = None
        self.reason = ""
        self.dropped: int | None = None

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
        self._limit = limit
        # Fixed slots, reused in turn, each with a summary made at its first use, and the times in one array:
        # after the first ``limit`` events, recording one allocates nothing that outlives it. Objects made while
        # thousands of connections close would land all over the allocator's arenas and keep every one of them
        # from going back to the system.
        self._when = array("d", bytes(8 * limit))
        self._what: list[str] = [""] * limit
        self._summaries: list[ConnectionSummary | None] = [None] * limit
        self._text: list[str] = [""] * limit
        self._count = 0  # events recorded since the last clear
        # The summaries of "opened" events still kept, by connection id: a close refreshes the one it finds.
        self._open: dict[int, ConnectionSummary] = {}

    def attach(self) -> None:
        self._node.model.on("connect", self._opened)
        self._node.model.on("disconnect", self._closed)

    @property
    def events(self) -> list[tuple[float, str, Any]]:
        """The kept events, oldest first: (time, "opened" | "closed" | "note", a summary or the note's text)."""
        limit, end = self._limit, self._count
        return [(self._when[i % limit], self._what[i % limit],
                 self._text[i % limit] if self._what[i % limit] == "note" else self._summaries[i % limit])
                for i in range(max(0, end - limit), end)]

    def clear(self) -> None:
        self._count = 0
        self._open.clear()

    def _slot(self, what: str) -> int | None:
        """The slot for a new event (the oldest one's), or None for a journal that keeps nothing."""
        if not self._limit:
            return None
        slot = self._count % self._limit
        old = self._summaries[slot]
        if self._what[slot] == "opened" and old is not None and self._open.get(old.id) is old:
            del self._open[old.id]
        self._when[slot] = self._node.clock.now()
        self._what[slot] = what
        self._text[slot] = ""
        self._count += 1
        return slot

    def _summary(self, slot: int, conn: Connection) -> ConnectionSummary:
        """The slot's summary, now of ``conn``."""
        summary = self._summaries[slot]
        if summary is None:
            summary = self._summaries[slot] = ConnectionSummary()
        summary.fill(conn.id, conn.protocol, conn.peer, conn.session.client_id, conn.session.user)
        return summary

    def _opened(self, conn: Connection) -> None:
        slot = self._slot("opened")
        if slot is not None:
            self._open[conn.id] = self._summary(slot, conn)

    def _closed(self, conn: Connection) -> None:
        opened = self._open.pop(conn.id, None)
        if opened is not None:
            opened.refresh(conn)  # the "opened" event shows the client id given after it, too
        slot = self._slot("closed")
        if slot is None:
            return
        summary = self._summary(slot, conn)
        described = conn.session.describe()
        subscriptions = described.get("subscriptions")
        summary.subscriptions = dict(subscriptions) if subscriptions else None
        summary.reason = _close_reason(conn) or ("the broker went down" if self._node.stopping else "")
        summary.dropped = described.get("dropped")

    def note(self, text: str) -> None:
        slot = self._slot("note")
        if slot is not None:
            self._text[slot] = text

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
    events = journal.events
    if not events:
        lines.append("  (none)")
    for when, what, item in events:
        if what == "opened":
            lines.append(f"  t={when:.3f} opened {_conn_text(item)}")
        elif what == "closed":
            extra = f" subscriptions={item.subscriptions}" if item.subscriptions else ""
            extra += f" dropped={item.dropped} (not reading)" if item.dropped else ""
            lines.append(f"  t={when:.3f} closed {_conn_text(item)}{extra}{f' ({item.reason})' if item.reason else ''}")
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
    recent = node.model.recent(messages)
    lines.append(f"messages (last {len(recent)} of {len(log)}):" if len(recent) < len(log) else
                 f"messages ({len(log)}):")
    if not log:
        lines.append("  (none)")
    lines.extend(f"  {describe(m)}" for m in recent)
    return "\n".join(lines)


