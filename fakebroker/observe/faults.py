"""Message faults: drop or delay the next N messages that match."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..model.broker import FaultAction, LoggedMessage

if TYPE_CHECKING:
    from ..node import Node
from .matching import BEFORE_ROUTING, check_criteria, format_criteria, matches


class MessageFault:
    """``drop_next``/``delay_next``: applies to the next ``remaining`` published messages matching ``criteria``.

    ``matched`` lists the log entries it affected. :meth:`cancel` (through the broker object) removes it early.
    """

    def __init__(self, node: Node, action: FaultAction, count: int, criteria: dict[str, Any],
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

    def __call__(self, logged: LoggedMessage) -> FaultAction | None:
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
