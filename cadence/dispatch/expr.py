"""The segment-filter expression IR: a small typed tree that both backends evaluate over contacts.

The DSL lowers its AST to these nodes (see `cadence.dispatch.lower`); the engine hands them to
`cadence.dispatch.filter_contacts`. Every node is a frozen dataclass and round-trips through
JSON with `to_json` / `from_json`, so a compiled campaign can store its predicates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

CmpOp = Literal["=", "!=", "<", "<=", ">", ">="]
CMP_OPS: tuple[CmpOp, ...] = ("=", "!=", "<", "<=", ">", ">=")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Timestamp:
    """An instant as integer microseconds since the Unix epoch (UTC), exact in both backends."""

    micros: int

    @classmethod
    def from_datetime(cls, value: datetime) -> Timestamp:
        """Convert an aware datetime (naive ones are taken as UTC) to exact microseconds."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta = value - _EPOCH
        return cls((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


Scalar: TypeAlias = bool | int | float | str | Timestamp | None
LitValue: TypeAlias = Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Col:
    """A contact attribute: one column of the contacts table."""

    name: str


@dataclass(frozen=True, slots=True)
class EventField:
    """A field of the one event a fan-out trigger matches against every contact."""

    name: str


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal: null, bool, number, string, timestamp, or a list (tuple) of those.

    A float NaN is stored as None: both mean "missing", and None compares equal to itself.
    """

    value: LitValue

    def __post_init__(self) -> None:
        v = self.value
        if isinstance(v, tuple):
            if any(isinstance(x, float) and math.isnan(x) for x in v):
                object.__setattr__(
                    self,
                    "value",
                    tuple(None if isinstance(x, float) and math.isnan(x) else x for x in v),
                )
        elif isinstance(v, float) and math.isnan(v):
            object.__setattr__(self, "value", None)


Operand: TypeAlias = Col | EventField | Lit


@dataclass(frozen=True, slots=True)
class Cmp:
    """`left OP right` with OP one of = != < <= > >=."""

    op: CmpOp
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class In:
    """`item in container`: container is a list literal, a list column or an event list field."""

    item: Operand
    container: Operand


@dataclass(frozen=True, slots=True)
class Contains:
    """`haystack contains needle`: substring for strings, membership for lists."""

    haystack: Operand
    needle: Operand


@dataclass(frozen=True, slots=True)
class StartsWith:
    """`text startswith prefix` on strings."""

    text: Operand
    prefix: Operand


@dataclass(frozen=True, slots=True)
class Within:
    """`column within DUR`: the timestamp column is in `[now - micros, now]`."""

    column: Operand
    micros: int


@dataclass(frozen=True, slots=True)
class Truthy:
    """A boolean attribute used as a predicate on its own (`opted_in`)."""

    operand: Operand


@dataclass(frozen=True, slots=True)
class And:
    """All of the items (SQL three-valued AND)."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Any of the items (SQL three-valued OR)."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The negation of an item; `not null` stays null."""

    item: Expr


Expr: TypeAlias = Cmp | In | Contains | StartsWith | Within | Truthy | And | Or | Not | Lit

DURATION_UNITS_US = {
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}


def event_count_column(event: str, within_micros: int | None = None) -> str:
    """Name the precomputed column holding `count(EVENT, DUR)` so the engine and lowering agree."""
    if within_micros is None:
        return f"count__{event}"
    return f"count__{event}__{within_micros}us"


# ---------------------------------------------------------------------------------------------
# JSON round trip


def _scalar_to_json(value: Scalar) -> Any:
    if isinstance(value, Timestamp):
        return {"ts": value.micros}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value


def _scalar_from_json(value: Any) -> Scalar:
    if isinstance(value, dict):
        if "ts" in value:
            return Timestamp(int(value["ts"]))
        if "float" in value:
            return float(value["float"])
        raise ValueError(f"unknown literal encoding: {value!r}")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"unknown literal: {value!r}")


def to_dict(node: Expr | Operand) -> dict[str, Any]:
    """Encode a node as plain JSON-able data with an `op` tag."""
    match node:
        case Col(name):
            return {"op": "col", "name": name}
        case EventField(name):
            return {"op": "event", "name": name}
        case Lit(value):
            if isinstance(value, tuple):
                return {"op": "lit", "list": [_scalar_to_json(v) for v in value]}
            return {"op": "lit", "value": _scalar_to_json(value)}
        case Cmp(op, left, right):
            return {"op": "cmp", "cmp": op, "left": to_dict(left), "right": to_dict(right)}
        case In(item, container):
            return {"op": "in", "item": to_dict(item), "container": to_dict(container)}
        case Contains(haystack, needle):
            return {"op": "contains", "haystack": to_dict(haystack), "needle": to_dict(needle)}
        case StartsWith(text, prefix):
            return {"op": "startswith", "text": to_dict(text), "prefix": to_dict(prefix)}
        case Within(column, micros):
            return {"op": "within", "column": to_dict(column), "micros": micros}
        case Truthy(operand):
            return {"op": "truthy", "operand": to_dict(operand)}
        case And(items):
            return {"op": "and", "items": [to_dict(i) for i in items]}
        case Or(items):
            return {"op": "or", "items": [to_dict(i) for i in items]}
        case Not(item):
            return {"op": "not", "item": to_dict(item)}
    raise TypeError(f"not an expression node: {node!r}")


def _operand(data: dict[str, Any]) -> Operand:
    node = from_dict(data)
    if not isinstance(node, Col | EventField | Lit):
        raise ValueError(f"expected an operand, got {data.get('op')!r}")
    return node


def _expr(data: dict[str, Any]) -> Expr:
    node = from_dict(data)
    if isinstance(node, Col | EventField):
        raise ValueError(f"expected an expression, got {data.get('op')!r}")
    return node


def from_dict(data: dict[str, Any]) -> Expr | Operand:
    """Decode what `to_dict` produced."""
    op = data.get("op")
    if op == "col":
        return Col(str(data["name"]))
    if op == "event":
        return EventField(str(data["name"]))
    if op == "lit":
        if "list" in data:
            return Lit(tuple(_scalar_from_json(v) for v in data["list"]))
        return Lit(_scalar_from_json(data["value"]))
    if op == "cmp":
        cmp = data["cmp"]
        if cmp not in CMP_OPS:
            raise ValueError(f"unknown comparison {cmp!r}")
        return Cmp(cmp, _operand(data["left"]), _operand(data["right"]))
    if op == "in":
        return In(_operand(data["item"]), _operand(data["container"]))
    if op == "contains":
        return Contains(_operand(data["haystack"]), _operand(data["needle"]))
    if op == "startswith":
        return StartsWith(_operand(data["text"]), _operand(data["prefix"]))
    if op == "within":
        return Within(_operand(data["column"]), int(data["micros"]))
    if op == "truthy":
        return Truthy(_operand(data["operand"]))
    if op == "and":
        return And(tuple(_expr(i) for i in data["items"]))
    if op == "or":
        return Or(tuple(_expr(i) for i in data["items"]))
    if op == "not":
        return Not(_expr(data["item"]))
    raise ValueError(f"unknown node {op!r}")


def to_json(node: Expr) -> str:
    """Stable JSON text for an expression (sorted keys)."""
    return json.dumps(to_dict(node), sort_keys=True, ensure_ascii=False)


def from_json(text: str) -> Expr:
    """Parse what `to_json` produced."""
    return _expr(json.loads(text))
