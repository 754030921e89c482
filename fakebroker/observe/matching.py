"""Message criteria, matching, and near-miss reports that say how each message differs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..model.broker import DeliveryRecord, LoggedMessage
from ..protocols import criteria as protocol_criteria

if TYPE_CHECKING:
    pass

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


_OUTCOMES = {None: "unacked", "auto": "no-ack", "ack": "acked", "requeue": "requeued", "reject": "rejected"}


def _delivery(d: DeliveryRecord) -> str:
    notes = [f"via {d.queue}"]
    if d.redelivered:
        notes.append("REDELIVERED")
    notes.append(_OUTCOMES.get(d.outcome, "?"))
    return f"{d.client_id or '?'} ({', '.join(notes)})"


def describe(m: LoggedMessage) -> str:
    """The log line of a message, with who it was delivered to."""
    text = m.describe()
    if m.deliveries:
        text += "; delivered to " + ", ".join(_delivery(d) for d in m.deliveries)
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


