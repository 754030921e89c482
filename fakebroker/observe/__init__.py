"""Watching a broker from a test: message criteria and near-miss reports (``matching``), the connection
journal and traffic reports (``journal``), and message faults (``faults``).

Everything here runs on the broker's event loop, or reads a broker whose loop has stopped.
"""

from .faults import MessageFault
from .journal import Journal, traffic_report
from .matching import (
    BEFORE_ROUTING,
    CRITERIA,
    MessageTimeout,
    check_criteria,
    describe,
    explain,
    format_criteria,
    listing,
    matches,
    mismatches,
)

__all__ = [
    "BEFORE_ROUTING", "CRITERIA", "Journal", "MessageFault", "MessageTimeout", "check_criteria", "describe",
    "explain", "format_criteria", "listing", "matches", "mismatches", "traffic_report",
]
