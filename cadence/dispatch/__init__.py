"""Dispatch hot paths: segment filtering, frequency caps and rate-limited batching.

Each runs on the Rust core (`cadence._dispatch_core`) when it is available and on an identical
pure-Python twin otherwise; `cadence._backend` makes that choice in one place.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
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


# The filter needs numpy and Arrow (about half a second to import): loaded on first use, so
# importing the expression types (`cadence.dispatch.expr`) does not pull them in.
_LAZY = {
    "filter_contacts": "cadence.dispatch.filter",
    "select_contacts": "cadence.dispatch.filter",
    "ExprTypeError": "cadence.dispatch.plan",
}


def __getattr__(name: str) -> Any:
    """The filter's names, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
