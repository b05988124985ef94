"""Dispatch hot paths: segment filtering, frequency caps and rate-limited batching.

Each runs on the Rust core (`cadence._dispatch_core`) when it is available and on an identical
pure-Python twin otherwise; `cadence._backend` makes that choice in one place.
"""

from cadence.dispatch.expr import (
    And,
    Cmp,
    Col,
    Contains,
    EventField,
    Expr,
    In,
    Lit,
    Not,
    Or,
    StartsWith,
    Timestamp,
    Truthy,
    Within,
    event_count_column,
)
from cadence.dispatch.filter import filter_contacts, select_contacts
from cadence.dispatch.plan import ExprTypeError

__all__ = [
    "And",
    "Cmp",
    "Col",
    "Contains",
    "EventField",
    "Expr",
    "ExprTypeError",
    "In",
    "Lit",
    "Not",
    "Or",
    "StartsWith",
    "Timestamp",
    "Truthy",
    "Within",
    "event_count_column",
    "filter_contacts",
    "select_contacts",
]
